"""Measure the per-block and per-exit cost of the multi-exit networks and write ``configs/models/*.yaml``.

For each backbone block and exit head of a :class:`e4gym.dnn.multiexit.MultiExitNet`, run once at batch 1
on the CPU in eval mode (fp32, no autograd) and count:

* ``flops``: what :class:`torch.utils.flop_counter.FlopCounterMode` reports (convolutions and matrix
  products only, 2 FLOPs per multiply-accumulate; element-wise work such as BatchNorm is not counted);
* ``macs``: ``flops / 2``;
* ``param_bytes``: bytes of the block's floating-point parameters and buffers (4 per element; the integer
  ``num_batches_tracked`` counters are not read at inference and are left out);
* ``activation_bytes``: over every dispatched operator that launches a kernel, the bytes of its
  floating-point tensor inputs that are not parameters or buffers plus the bytes of its floating-point
  outputs (4 per element), i.e. activations read plus written, with no reuse across operators;
* ``kernels``: the number of aten operators dispatched, counted with a
  :class:`torch.utils._python_dispatch.TorchDispatchMode`, leaving out pure metadata operators (views such
  as ``aten.view``, ``aten.t``, ``aten.expand``, ``aten.detach``, ``aten.squeeze``; ``aten._unsafe_view``;
  allocations such as ``aten.empty``) which launch no GPU kernel;
* ``output_shape``: the output shape without the batch dimension.

All counts depend only on the network's structure and the input shape, so profiles are reproducible
exactly; ``tests/dnn/test_profiling.py`` regenerates the checked-in profiles and compares them.

The exit accuracies are not measured: they are assumptions (:data:`DEFAULT_EXIT_ACCURACY`) and are kept
from the existing file when a profile is regenerated.
"""

from __future__ import annotations

import importlib
import itertools
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from e4gym._yaml import load_yaml
from e4gym.dnn.multiexit import DEFAULT_EXITS, MultiExitNet, build_multiexit, early_head
from e4gym.errors import ConfigError, UnknownNameError
from e4gym.paths import config_dir

__all__ = [
    "DEFAULT_EXIT_ACCURACY",
    "METADATA_OPS",
    "load_factory",
    "measure_module",
    "profile_model",
    "profile_module",
    "profile_to_yaml",
    "write_module_profile",
    "write_profile",
]

_BYTES_FP32 = 4

#: Operators that only change metadata or allocate memory: they launch no GPU kernel and move no data.
#: Any operator whose schema marks its output as a view of an input (``OpOverload.is_view``) is skipped too.
METADATA_OPS = frozenset(
    {
        "aten::view",
        "aten::_unsafe_view",
        "aten::reshape",
        "aten::t",
        "aten::expand",
        "aten::detach",
        "aten::squeeze",
        "aten::unsqueeze",
        "aten::flatten",
        "aten::alias",
        "aten::as_strided",
        "aten::permute",
        "aten::transpose",
        "aten::slice",
        "aten::select",
        "aten::lift_fresh",
        "aten::empty",
        "aten::empty_like",
        "aten::empty_strided",
        "aten::new_empty",
        "aten::new_empty_strided",
        "aten::sym_size",
        "aten::sym_stride",
        "aten::sym_numel",
    }
)

_PORTEND = "PORTEND's cheap-head exits of EfficientNet-B0 (27.9, 48.4, 60.8, 71.1, 74.0 %)"
_MSDNET = "MSDNet's stronger 5-exit heads (59.2-76.7 %)"
_FINAL = {
    "efficientnet_b0": ("EfficientNet_B0_Weights.IMAGENET1K_V1", 77.692),
    "mobilenet_v2": ("MobileNet_V2_Weights.IMAGENET1K_V1", 71.878),
    "resnet18": ("ResNet18_Weights.IMAGENET1K_V1", 69.758),
}
_ASSUMED = {
    "efficientnet_b0": (0.40, 0.56, 0.67, 0.73),
    "mobilenet_v2": (0.38, 0.52, 0.62, 0.68),
    "resnet18": (0.35, 0.50, 0.62),
}


def _block_name(name: str, index: int) -> str:
    if name == "resnet18":
        return ("stem", "layer1", "layer2", "layer3", "layer4")[index]
    return f"features.{index}"


def _default_table() -> dict[str, tuple[tuple[float, str], ...]]:
    table = {}
    for name, early in _ASSUMED.items():
        weights, final = _FINAL[name]
        rows = [
            (
                acc,
                f"ASSUMPTION: ImageNet top-1 of exit {i} (hidden-256 MLP head after "
                f"{_block_name(name, DEFAULT_EXITS[name][i])}), interpolated between {_PORTEND} "
                f"and {_MSDNET}, below the final exit's {final} %",
            )
            for i, acc in enumerate(early)
        ]
        rows.append(
            (
                round(final / 100, 4),
                f"torchvision's published ImageNet-1K top-1 of {weights} ({final} %); assumes the backbone "
                f"keeps these weights",
            )
        )
        table[name] = tuple(rows)
    return table


#: EfficientNet-Lite0's early exits: heads distilled on real video (`e4gym distill-exits`, docs/real_video.md),
#: their held-out agreement with the final exit (measured) times the final exit's ImageNet top-1 (Google's).
_LITE0_AGREEMENT = (0.422, 0.438, 0.478, 0.482)
_LITE0_FINAL = 0.751


def _lite0_table() -> tuple[tuple[float, str], ...]:
    rows = [(round(a * _LITE0_FINAL, 3),
             f"ASSUMPTION: exit {i}'s head was distilled on real video, not trained on ImageNet; its accuracy is "
             f"taken as its measured agreement with the final exit on held-out frames ({a:.1%}, docs/real_video.md) "
             f"times the final exit's {_LITE0_FINAL:.1%}")
            for i, a in enumerate(_LITE0_AGREEMENT)]
    rows.append((_LITE0_FINAL,
                 "Google's EfficientNet-Lite release (tensorflow/tpu models/official/efficientnet/lite): "
                 "EfficientNet-Lite0 ImageNet top-1 75.1 % (float); assumes the shipped weights reach it"))
    return tuple(rows)


#: Default top-1 accuracy (fraction) and its source string per exit, per model. Hand-set; see the sources.
DEFAULT_EXIT_ACCURACY: dict[str, tuple[tuple[float, str], ...]] = {**_default_table(),
                                                                   "efficientnet_lite0": _lite0_table()}


# ------------------------------------------------------------------------------------------------------
# Counting
# ------------------------------------------------------------------------------------------------------


def _storage_ptr(t: Tensor) -> int:
    return t.untyped_storage().data_ptr()


def _fp_bytes(t: Any) -> int:
    if isinstance(t, Tensor) and t.is_floating_point():
        return t.numel() * _BYTES_FP32
    return 0


class _KernelCounter(TorchDispatchMode):
    """Counts kernel-launching operators and the activation bytes they read and write."""

    def __init__(self, param_storages: set[int]) -> None:
        super().__init__()
        self.param_storages = param_storages
        self.kernels = 0
        self.activation_bytes = 0
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._schema.name
        if func.is_view or packet in METADATA_OPS:
            return out
        self.kernels += 1
        self.ops.append(str(func))
        inputs, _ = tree_flatten((args, kwargs))
        for t in inputs:
            if isinstance(t, Tensor) and _storage_ptr(t) not in self.param_storages:
                self.activation_bytes += _fp_bytes(t)
        outputs, _ = tree_flatten(out)
        self.activation_bytes += sum(_fp_bytes(t) for t in outputs)
        return out


def _param_storages(model: nn.Module) -> set[int]:
    return {_storage_ptr(t) for t in [*model.parameters(), *model.buffers()]}


def measure_module(
    module: nn.Module, x: Tensor, param_storages: set[int] | None = None
) -> tuple[dict[str, Any], Tensor]:
    """Cost of running ``module`` once on ``x`` (no autograd), and its output.

    Args:
        module: the block or head (put the network in eval mode first).
        x: its input, batch 1.
        param_storages: storage addresses of every parameter and buffer of the whole network, so that
            tensors derived from parameters (e.g. a transposed weight) are not counted as activations;
            default: those of ``module``.

    Returns:
        ``({macs, flops, param_bytes, activation_bytes, kernels, output_shape}, output)`` with counts as
        ints (operations and bytes per inference) and ``output_shape`` without the batch dimension.
    """
    if param_storages is None:
        param_storages = _param_storages(module)
    with torch.no_grad():
        flop_counter = FlopCounterMode(display=False)
        with flop_counter:
            out = module(x)
        counter = _KernelCounter(param_storages)
        with counter:
            module(x)
    if not isinstance(out, Tensor):
        raise ConfigError(f"returned a {type(out).__name__}, not a tensor (a block passes one tensor to the next)")
    flops = int(flop_counter.get_total_flops())
    tensors = [*module.parameters(), *module.buffers()]
    unique = {id(t): t for t in tensors}.values()
    cost = {
        "macs": flops // 2,
        "flops": flops,
        "param_bytes": sum(_fp_bytes(t) for t in unique),
        "activation_bytes": int(counter.activation_bytes),
        "kernels": int(counter.kernels),
        "output_shape": [int(s) for s in out.shape[1:]],
    }
    return cost, out


def profile_model(
    name: str, input_shape: Sequence[int] = (3, 224, 224), num_classes: int = 1000
) -> dict[str, Any]:
    """Profile the default multi-exit network ``name`` at batch 1, fp32, on the CPU, in eval mode.

    Args:
        name: ``efficientnet_b0``, ``efficientnet_lite0``, ``mobilenet_v2`` or ``resnet18``.
        input_shape: image shape without the batch dimension (channels, height, width).
        num_classes: classes of every exit.

    Returns:
        A mapping in the layout of ``configs/models/*.yaml`` without the accuracy fields: ``name``,
        ``input_shape``, ``num_classes``, ``source``, ``totals`` (``macs``, ``flops`` of all blocks plus the
        final head; ``params``: the plain backbone's parameter count), ``blocks`` (one cost mapping each,
        see :func:`measure_module`) and ``exits`` (``name``, ``after_block``, ``head`` cost mapping).

    Raises:
        UnknownNameError: unknown model name (the message lists the known ones).
        ConfigError: ``input_shape`` is not three positive integers.
    """
    if name not in DEFAULT_EXITS:
        raise UnknownNameError(f"unknown model '{name}'; known models: {sorted(DEFAULT_EXITS)}")
    shape = [int(s) for s in input_shape]
    if len(shape) != 3 or any(s < 1 for s in shape) or shape[0] != 3:
        raise ConfigError(
            f"input_shape must be [3, height, width] with positive sizes, got {list(input_shape)}"
        )
    net: MultiExitNet = build_multiexit(name, num_classes=num_classes).eval()
    storages = _param_storages(net)
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))

    blocks, features = [], []
    for i, block_name in enumerate(net.block_names):
        cost, x = measure_module(net.block(i), x, storages)
        blocks.append({"name": block_name, **cost})
        features.append(x)
    exits = []
    for e, after in enumerate(net.exit_after):
        cost, _ = measure_module(net.head(e), features[after], storages)
        exits.append({"name": f"exit{e}", "after_block": after, "head": {"name": net.head_names[e], **cost}})

    final_head = exits[-1]["head"]
    totals = {
        "macs": sum(b["macs"] for b in blocks) + final_head["macs"],
        "flops": sum(b["flops"] for b in blocks) + final_head["flops"],
        "params": sum(p.numel() for p in net.backbone.parameters()),
    }
    return {
        "name": name,
        "input_shape": shape,
        "num_classes": num_classes,
        "source": (
            f"generated by `e4gym profile --model {name}` from e4gym.dnn "
            f"(PyTorch FLOP counter, batch 1, fp32)"
        ),
        "totals": totals,
        "blocks": blocks,
        "exits": exits,
    }


# ------------------------------------------------------------------------------------------------------
# YAML
# ------------------------------------------------------------------------------------------------------

_PLAIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.+]*$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}
_COST_KEYS = ("macs", "flops", "param_bytes", "activation_bytes", "kernels", "output_shape")


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    text = str(value)
    if _PLAIN.match(text) and text.lower() not in _YAML_WORDS:
        return text
    return json.dumps(text, ensure_ascii=False)


def _flow(cost: dict[str, Any]) -> str:
    keys = ["name", *_COST_KEYS]
    return "{" + ", ".join(f"{k}: {_scalar(cost[k])}" for k in keys) + "}"


def _accuracies(name: str, path: Path, n_exits: int) -> list[tuple[float, str]]:
    """Per exit: the accuracy and its source, from the existing file if any, else the defaults."""
    defaults = list(DEFAULT_EXIT_ACCURACY.get(name, ()))
    if len(defaults) != n_exits:
        defaults = [(0.0, "ASSUMPTION: unknown; set this exit's accuracy by hand")] * n_exits
    if not path.exists():
        return defaults
    old = load_yaml(path).get("exits")
    if not isinstance(old, list):
        old = []
    result = list(defaults)
    for i, item in enumerate(old[:n_exits]):
        if isinstance(item, dict) and item.get("name", f"exit{i}") == f"exit{i}" and "accuracy" in item:
            acc = item["accuracy"]
            if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0.0 <= acc <= 1.0:
                raise ConfigError(
                    f"{path}: field 'exits[{i}].accuracy' must be a number in [0, 1], got {acc!r}"
                )
            result[i] = (acc, str(item.get("accuracy_source", "hand-set (no source given)")))
    return result


def profile_to_yaml(profile: dict[str, Any], accuracies: Sequence[tuple[float, str]]) -> str:
    """Render a :func:`profile_model` result, with one ``(accuracy, source)`` per exit, as profile YAML."""
    name = profile["name"]
    command = profile.get("command", f"e4gym profile --model {name}")
    writer = "write_module_profile" if "command" in profile else "write_profile"
    lines = [
        f"# Cost profile of the multi-exit {name} (batch 1, fp32, input {profile['input_shape']}).",
        f"# Generated by `{command}` (e4gym.dnn.profiling.{writer}): do not edit",
        "# the cost fields by hand, regenerate them. Only the `accuracy` fields (with their",
        "# `accuracy_source`) are hand-set assumptions; they are kept when the file is regenerated.",
        f"name: {_scalar(name)}",
        f"input_shape: {_scalar(profile['input_shape'])}",
        f"num_classes: {profile['num_classes']}",
        f"source: {json.dumps(profile['source'], ensure_ascii=False)}",
        "totals: {" + ", ".join(f"{k}: {int(v)}" for k, v in profile["totals"].items()) + "}",
        "blocks:",
    ]
    lines += [f"  - {_flow(b)}" for b in profile["blocks"]]
    lines.append("exits:")
    for spec, (acc, source) in zip(profile["exits"], accuracies, strict=True):
        lines += [
            f"  - name: {_scalar(spec['name'])}",
            f"    after_block: {spec['after_block']}",
            f"    head: {_flow(spec['head'])}",
            f"    accuracy: {_scalar(acc)}",
            f"    accuracy_source: {json.dumps(source, ensure_ascii=False)}",
        ]
    return "\n".join(lines) + "\n"


def write_profile(name: str, path: str | Path | None = None) -> Path:
    """Profile model ``name`` and write its YAML to ``path`` (default ``configs/models/<name>.yaml``).

    If ``path`` exists, its per-exit ``accuracy`` and ``accuracy_source`` are kept (they are hand-set);
    otherwise they come from :data:`DEFAULT_EXIT_ACCURACY`. The written file loads with
    :func:`e4gym.dnn.profile.load_model_profile`.

    Returns:
        The path written.

    Raises:
        UnknownNameError: unknown model name.
        ConfigError: the existing file is unreadable or has a malformed accuracy.
    """
    path = Path(path) if path is not None else config_dir() / "models" / f"{name}.yaml"
    profile = profile_model(name)
    return _write(path, profile_to_yaml(profile, _accuracies(name, path, len(profile["exits"]))))


def _write(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically: an interrupted write never leaves a half-written profile."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ------------------------------------------------------------------------------------------------------
# Any network: `e4gym profile --module pkg.mod:factory`
# ------------------------------------------------------------------------------------------------------

_FACTORY_FORM = "'package.module:factory' (a callable returning an nn.Sequential of blocks or a MultiExitNet)"


def load_factory(spec: str) -> Callable[[], Any]:
    """The callable named by ``spec`` = ``"package.module:factory"`` (imported; nothing else is run).

    Raises:
        ConfigError: a malformed spec, a module that does not import, a missing or non-callable attribute.
    """
    mod_name, sep, attr = str(spec).partition(":")
    if not sep or not mod_name or not attr:
        raise ConfigError(f"--module {spec!r}: expected {_FACTORY_FORM}")
    try:
        module = importlib.import_module(mod_name)
    except Exception as exc:  # ImportError, or whatever the module raises while importing
        raise ConfigError(f"--module {spec!r}: cannot import {mod_name!r} ({type(exc).__name__}: {exc}); check "
                          "the module path and that it is on PYTHONPATH") from None
    factory = module
    for part in attr.split("."):
        factory = getattr(factory, part, None)
        if factory is None:
            raise ConfigError(f"--module {spec!r}: {mod_name!r} has no attribute {attr!r}")
    if not callable(factory):
        raise ConfigError(f"--module {spec!r}: {attr!r} is a {type(factory).__name__}, not callable; expected "
                          f"{_FACTORY_FORM}")
    return factory


def _no_head(output_shape: list[int]) -> dict[str, Any]:
    """The cost of no head at all: the last block's output is the prediction."""
    return {"name": "none", "macs": 0, "flops": 0, "param_bytes": 0, "activation_bytes": 0, "kernels": 0,
            "output_shape": list(output_shape)}


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def profile_module(
    net: nn.Module,
    name: str,
    input_shape: Sequence[int] = (3, 224, 224),
    exits: Sequence[int] = (),
    num_classes: int = 1000,
    command: str | None = None,
) -> dict[str, Any]:
    """Profile any network given as an ordered sequence of blocks, at batch 1, fp32, on the CPU, in eval mode.

    Args:
        net: an :class:`torch.nn.Sequential` (or ``ModuleList``) whose children are the blocks in the order
            they run, the last one's output being the prediction (its exit has no head: zero cost); or a
            :class:`~e4gym.dnn.multiexit.MultiExitNet`, whose own blocks and exit heads are profiled.
        name: the model's name in the profile.
        input_shape: one input without the batch dimension, e.g. ``(3, 416, 416)``.
        exits: block indices after which early exits go (a sequence only): each gets e4gym's early head
            (average pool, a 256-wide hidden layer, ``num_classes`` outputs), which needs a ``(C, H, W)`` map.
        num_classes: classes of the early heads (and the profile's ``num_classes``).
        command: the command line recorded in the YAML's header (default: the Python call).

    Returns:
        A mapping in the layout of :func:`profile_model`'s.

    Raises:
        ConfigError: a network that is not a sequence of blocks or has none; a block that fails on its input
            or returns something other than one tensor (the message names the block and the input shape); bad
            exits or input shape.
    """
    shape = [int(s) for s in input_shape]
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(f"input shape must be positive sizes such as 3x224x224, got {list(input_shape)}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    net = net.eval()
    if isinstance(net, MultiExitNet):
        if exits:
            raise ConfigError(f"{name} is a MultiExitNet with its own exits {net.exit_after}; drop --exits")
        blocks = [(net.block_names[i], net.block(i)) for i in range(net.n_blocks)]
        heads = {after: (net.head_names[e], net.head(e)) for e, after in enumerate(net.exit_after)}
    elif isinstance(net, (nn.Sequential, nn.ModuleList)):
        blocks = list(net.named_children())
        heads = {}
    else:
        raise ConfigError(f"{name}: the factory returned a {type(net).__name__}, not an ordered sequence of blocks; "
                          "return an nn.Sequential of the blocks in the order they run (or a MultiExitNet)")
    if not blocks:
        raise ConfigError(f"{name}: the network has no blocks; return an nn.Sequential of at least one block")
    last = len(blocks) - 1
    early = [int(i) for i in exits]
    if any(not 0 <= i < last for i in early) or any(b <= a for a, b in itertools.pairwise(early)):
        raise ConfigError(f"exits {early} must be increasing block indices in 0..{last - 1} (the last block, "
                          f"{last}, is always an exit)")
    storages = _param_storages(net)
    x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
    costs, outputs = [], []
    for i, (bname, block) in enumerate(blocks):
        try:
            cost, y = measure_module(block, x, storages)
        except Exception as exc:  # any error of the user's block: name the block and its input
            raise ConfigError(f"{name}: block {i} ('{bname}') fails on an input of shape {tuple(x.shape)}: "
                              f"{_one_line(exc)}") from None
        costs.append({"name": bname, **cost})
        outputs.append(y)
        x = y
    exit_specs = []
    for i in early:
        out = outputs[i]
        if out.dim() != 4:
            raise ConfigError(f"{name}: an exit after block {i} ('{blocks[i][0]}') needs a (C, H, W) feature map, "
                              f"its output has shape {tuple(out.shape[1:])}")
        torch.manual_seed(0)
        head = early_head(int(out.shape[1]), 256, num_classes, 0.2).eval()
        cost, _ = measure_module(head, out, _param_storages(head))
        exit_specs.append((i, {"name": f"exits.{len(exit_specs)}", **cost}))
    for after, (hname, head) in heads.items():
        cost, _ = measure_module(head, outputs[after], storages)
        exit_specs.append((after, {"name": hname, **cost}))
    if last not in heads:
        exit_specs.append((last, _no_head(costs[last]["output_shape"])))
    exit_specs.sort(key=lambda item: item[0])
    final = exit_specs[-1][1]
    # The params total is the backbone's: a MultiExitNet's early heads are not counted.
    early_params = {id(p) for p in net.exits.parameters()} if isinstance(net, MultiExitNet) else set()
    return {
        "name": name,
        "input_shape": shape,
        "num_classes": num_classes,
        "source": f"generated by `{command or f'profile_module({name!r})'}` (PyTorch FLOP counter, batch 1, fp32)",
        "command": command or f"e4gym.dnn.profiling.profile_module(..., {name!r})",
        "totals": {
            "macs": sum(c["macs"] for c in costs) + final["macs"],
            "flops": sum(c["flops"] for c in costs) + final["flops"],
            "params": sum(p.numel() for p in net.parameters() if id(p) not in early_params),
        },
        "blocks": costs,
        "exits": [{"name": f"exit{e}", "after_block": after, "head": head} for e, (after, head) in
                  enumerate(exit_specs)],
    }


def write_module_profile(
    spec: str,
    path: str | Path | None = None,
    *,
    name: str | None = None,
    input_shape: Sequence[int] = (3, 224, 224),
    exits: Sequence[int] = (),
    num_classes: int = 1000,
    accuracies: Sequence[float] | None = None,
    accuracy_source: str | None = None,
) -> Path:
    """``e4gym profile --module``: build the network with the factory ``spec`` (``"pkg.mod:factory"``), profile
    it (:func:`profile_module`) and write its YAML to ``path`` (default ``configs/models/<name>.yaml``).

    The exits' accuracies cannot be measured here: they are kept from an existing file, else taken from
    ``accuracies`` (one per exit, each in (0, 1], with ``accuracy_source`` saying where they come from).

    Raises:
        ConfigError: a bad factory or network (see :func:`load_factory`, :func:`profile_module`); no accuracies
            for a new file, or the wrong number.
    """
    factory = load_factory(spec)
    name = name or spec.rpartition(":")[2].rpartition(".")[2]
    try:
        net = factory()
    except Exception as exc:
        raise ConfigError(f"--module {spec!r}: calling the factory failed ({_one_line(exc)})") from None
    shape_text = "x".join(str(int(s)) for s in input_shape)
    command = f"e4gym profile --module {spec} --name {name} --input {shape_text}"
    if exits:
        command += " --exits " + " ".join(str(int(e)) for e in exits)
    if num_classes != 1000:
        command += f" --num-classes {num_classes}"
    profile = profile_module(net, name, input_shape, exits, num_classes, command)
    path = Path(path) if path is not None else config_dir() / "models" / f"{name}.yaml"
    n_exits = len(profile["exits"])
    if accuracies is not None:
        values = [float(a) for a in accuracies]
        if len(values) != n_exits or any(not 0.0 < a <= 1.0 for a in values):
            raise ConfigError(f"--accuracy needs {n_exits} values in (0, 1], one per exit, got {list(accuracies)}")
        source = accuracy_source or "ASSUMPTION: given on the command line (no source recorded)"
        rows = [(a, source) for a in values]
    elif path.exists():
        rows = _accuracies(name, path, n_exits)
        if any(a <= 0.0 for a, _ in rows):
            raise ConfigError(f"{path} has no accuracy for every one of the {n_exits} exits; pass --accuracy")
    else:
        raise ConfigError(f"{name}: pass --accuracy with {n_exits} value(s) in (0, 1], one per exit, and "
                          "--accuracy-source saying where they come from (e4gym cannot measure accuracy)")
    return _write(path, profile_to_yaml(profile, rows))
