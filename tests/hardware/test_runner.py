"""TorchRunner: Work keys mapped onto the multi-exit network, run for real (CPU here; CUDA when present)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from e4gym.dnn import load_model_profile
from e4gym.dnn.work import Work
from e4gym.errors import ConfigError, HardwareError
from e4gym.hardware.runner import TorchRunner

SIZE = 32  # small images keep the CPU runs fast; every block and head accepts them (adaptive pooling)


@pytest.fixture(scope="module")
def prof():
    return load_model_profile("efficientnet_b0")


@pytest.fixture(scope="module")
def runner():
    return TorchRunner("efficientnet_b0", device="cpu", input_size=SIZE, warmup=1)


@pytest.fixture
def image(runner):
    return torch.randn(runner.input_shape(1), generator=torch.Generator().manual_seed(1))


def _reference(runner, x):
    with torch.inference_mode():
        return [o.logits for o in runner.net.forward_all(x)]


def test_frame_works_run_every_exit(runner, prof):
    for e in range(prof.n_exits):
        s = runner.run(prof.frame_work(e))
        assert s > 0
        assert runner.last_exit == e
        assert tuple(runner.last_logits.shape) == (1, 1000)
        assert runner.frame_block == prof.exits[e].after_block


def test_block_and_head_works_return_positive_seconds(runner, prof):
    for j in range(prof.n_blocks):
        assert runner.run(prof.block_work(j)) > 0
        ex = [e for e, x in enumerate(prof.exits) if x.after_block == j]
        for e in ex:
            assert runner.run(prof.head_work(e)) > 0


def test_block_by_block_matches_full_forward(runner, prof, image):
    ref = _reference(runner, image)
    runner.set_input(image)
    x = image
    exit_at = {x.after_block: e for e, x in enumerate(prof.exits)}
    for j in range(prof.n_blocks):
        runner.run(prof.block_work(j))
        with torch.inference_mode():
            x = runner.net.block(j)(x)
        act = runner.activation
        assert act.shape == x.shape
        assert act.shape[1] == prof.blocks[j].output_shape[0]  # channels as profiled
        if j in exit_at:
            e = exit_at[j]
            runner.run(prof.head_work(e))
            assert runner.last_exit == e
            torch.testing.assert_close(runner.last_logits, ref[e], rtol=1e-4, atol=1e-5)


def test_frame_work_matches_forward_and_can_be_continued(runner, prof, image):
    ref = _reference(runner, image)
    runner.set_input(image)
    runner.run(prof.frame_work(0))
    torch.testing.assert_close(runner.last_logits, ref[0], rtol=1e-4, atol=1e-5)
    # An early exit leaves its activation: the frame goes on to the next exit.
    runner.run(prof.block_work(prof.exits[0].after_block + 1))
    runner.run(prof.head_work(1))
    torch.testing.assert_close(runner.last_logits, ref[1], rtol=1e-4, atol=1e-5)


def test_concatenated_work(runner, prof, image):
    ref = _reference(runner, image)
    runner.set_input(image)
    for j in range(prof.exits[1].after_block):
        runner.run(prof.block_work(j))
    combined = prof.block_work(prof.exits[1].after_block) + prof.head_work(1)
    assert runner.run(combined) > 0
    torch.testing.assert_close(runner.last_logits, ref[1], rtol=1e-4, atol=1e-5)


def test_fresh_input_per_frame(runner, prof):
    runner.run(prof.frame_work(0))
    a = runner.last_logits.clone()
    runner.run(prof.frame_work(0))
    assert not torch.equal(a, runner.last_logits)


def test_out_of_order_blocks_are_refused_and_change_nothing(runner, prof):
    runner.new_frame()
    with pytest.raises(ConfigError, match=r"block 3 .*needs the output of block 2.*no frame in progress"):
        runner.run(prof.block_work(3))
    for j in range(4):
        runner.run(prof.block_work(j))
    with pytest.raises(ConfigError, match=r"block 5 .*needs the output of block 4.*blocks 0\.\.3"):
        runner.run(prof.block_work(5))
    assert runner.frame_block == 3
    with pytest.raises(ConfigError, match="exit 1's head needs the output of block 4"):
        runner.run(prof.head_work(1))
    runner.run(prof.block_work(4))  # the frame goes on where it was
    runner.run(prof.head_work(1))
    with pytest.raises(ConfigError, match=r"batch 2.*batch 1"):
        runner.run(prof.block_work(5), batch=2)


def test_batches(runner, prof):
    assert runner.run(prof.frame_work(2), batch=2) > 0
    assert tuple(runner.last_logits.shape) == (2, 1000)
    runner.run(prof.block_work(prof.exits[2].after_block + 1), batch=2)
    with pytest.raises(ConfigError, match="batch must be an integer"):
        runner.run(prof.frame_work(0), batch=0)


def test_set_input_is_used_once_and_checked(runner, prof, image):
    runner.set_input(image[0])  # (3, H, W) is repeated to the batch
    runner.run(prof.frame_work(0), batch=2)
    torch.testing.assert_close(runner.last_logits[0], runner.last_logits[1])
    runner.set_input(torch.randn(2, 3, SIZE, SIZE))
    with pytest.raises(ConfigError, match="batch 2"):
        runner.run(prof.frame_work(0), batch=1)
    with pytest.raises(ConfigError, match=r"\(3, H, W\)"):
        runner.set_input(torch.zeros(1, 1, SIZE, SIZE))


def test_work_of_another_model_or_split_is_refused(runner, prof):
    other = load_model_profile("mobilenet_v2")
    with pytest.raises(ConfigError, match=r"for model 'mobilenet_v2'.*holds 'efficientnet_b0'"):
        runner.run(other.frame_work(0))
    bogus = Work("efficientnet_b0/block3", ("features.4",), (1.0,), (1.0,), (1.0,), (1.0,))
    with pytest.raises(ConfigError, match="split the model differently"):
        runner.run(bogus)
    with pytest.raises(ConfigError, match="not a Work key"):
        runner.run(Work("efficientnet_b0/stage3", ("x",), (1.0,), (1.0,), (1.0,), (1.0,)))
    with pytest.raises(ConfigError, match=r"exits 0..4, got exit 7"):
        runner.run(Work("efficientnet_b0/head7", ("x",), (1.0,), (1.0,), (1.0,), (1.0,)))


def test_bad_arguments():
    with pytest.raises(ConfigError, match="dtype"):
        TorchRunner(dtype="int8", warmup=0)
    with pytest.raises(ConfigError, match="device"):
        TorchRunner(device="tpu", warmup=0)
    with pytest.raises(ConfigError, match="input_size"):
        TorchRunner(input_size=4, warmup=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_missing_is_a_clear_error():
    with pytest.raises(HardwareError, match="CUDA is not available"):
        TorchRunner(device="cuda", warmup=0)


@pytest.mark.hardware
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_runs_and_matches_cpu(prof):
    gpu = TorchRunner(device="cuda", input_size=SIZE, warmup=1)
    cpu = TorchRunner(device="cpu", input_size=SIZE, warmup=0)
    cpu.net.load_state_dict(gpu.net.state_dict())
    x = torch.randn(1, 3, SIZE, SIZE)
    for r in (gpu, cpu):
        r.set_input(x)
        assert r.run(prof.frame_work()) > 0
    torch.testing.assert_close(gpu.last_logits.cpu(), cpu.last_logits, rtol=1e-3, atol=1e-3)


def test_importing_does_not_import_torch():
    code = "import sys, e4gym.hardware.runner, e4gym.hardware.nvml; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
