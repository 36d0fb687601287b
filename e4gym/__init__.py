"""e4gym: Gymnasium environments for DVFS and early-exit research on (emulated) NVIDIA Jetson boards.

Importing the package registers the environments::

    import gymnasium as gym
    import e4gym  # noqa: F401  (registers e4gym/EarlyExitDVFS-v1 and e4gym/EarlyExitDVFSBlock-v1)

    env = gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx")

``gym.make("e4gym:e4gym/EarlyExitDVFS-v1")`` imports the package itself. The emulator is the default
backend and needs no hardware. Importing e4gym does not import torch.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

__version__ = "0.1.0"
__all__ = ["BATCH_ENV_ID", "EDGE_CLOUD_ENV_ID", "ENV_IDS", "REAL_ENV_IDS", "SERVING_ENV_IDS", "__version__"]

#: The registered environment ids.
ENV_IDS = ("e4gym/EarlyExitDVFS-v1", "e4gym/EarlyExitDVFSBlock-v1")

if ENV_IDS[0] not in registry:
    # order_enforce=False: the envs raise gymnasium.error.ResetNeeded themselves (tested), so Gymnasium's
    # OrderEnforcing wrapper would only add a call per step. The passive env checker stays on.
    register(
        id=ENV_IDS[0],
        entry_point="e4gym.envs.frame:EarlyExitDVFSEnv",
        vector_entry_point="e4gym.envs.frame_vector:EarlyExitDVFSVectorEnv",
        order_enforce=False,
    )
if ENV_IDS[1] not in registry:
    register(id=ENV_IDS[1], entry_point="e4gym.envs.block:EarlyExitDVFSBlockEnv", order_enforce=False)

#: DVFO's edge-cloud env (issue 18): clock levels and an offload share per frame (:mod:`e4gym.envs.edge_cloud`).
EDGE_CLOUD_ENV_ID = "e4gym/EdgeCloudDVFS-v0"
if EDGE_CLOUD_ENV_ID not in registry:
    register(id=EDGE_CLOUD_ENV_ID, entry_point="e4gym.envs.edge_cloud:EdgeCloudDVFSEnv", order_enforce=False)

#: BCEdge's batching env (issue 19): per model a batch size and an instance count, optionally the clocks, each
#: decision interval (:mod:`e4gym.envs.batching`).
BATCH_ENV_ID = "e4gym/BatchConcurrency-v0"
if BATCH_ENV_ID not in registry:
    register(id=BATCH_ENV_ID, entry_point="e4gym.envs.batching:BatchConcurrencyEnv", order_enforce=False)
#: The serving env family (requests served per decision interval; the benchmark counts intervals, not frames).
SERVING_ENV_IDS = (BATCH_ENV_ID,)

#: The same envs on a real Jetson board (``backend="jetson"``; ``backend_kwargs`` e.g. ``{"sysfs_root": ...}``).
#: Registered ``nondeterministic=True``: a board's timing and power are not reproducible from a seed. Steps are
#: paced at the frame rate by the backend's ``idle`` (it sleeps until the next frame arrives).
REAL_ENV_IDS = ("e4gym/EarlyExitDVFSJetson-v1", "e4gym/EarlyExitDVFSBlockJetson-v1")
for _id, _entry in zip(REAL_ENV_IDS, ("e4gym.envs.frame:EarlyExitDVFSEnv", "e4gym.envs.block:EarlyExitDVFSBlockEnv")):
    if _id not in registry:
        register(id=_id, entry_point=_entry, kwargs={"backend": "jetson"}, nondeterministic=True, order_enforce=False)
