"""The device catalogue: levels as CALIBRATION.md lists them, power modes, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from e4gym.errors import ConfigError, SettingError, UnknownNameError
from e4gym.hardware.spec import available_devices, load_device

EXPECTED_DEVICES = {"jetson-nano", "jetson-tx2", "xavier-nx", "agx-xavier", "orin-nano", "orin-nx", "agx-orin"}


def test_catalogue_has_every_device() -> None:
    assert EXPECTED_DEVICES <= set(available_devices())


@pytest.mark.parametrize("name", sorted(EXPECTED_DEVICES))
def test_every_device_loads_with_sorted_levels(name: str) -> None:
    spec = load_device(name)
    for table in (spec.cpu_freqs_hz, spec.gpu_freqs_hz, spec.emc_freqs_hz):
        assert np.all(np.diff(table) > 0)
    assert spec.default_power_mode in spec.power_modes
    assert spec.governors["cpu"] == "schedutil" and spec.governors["gpu"] == "nvhost_podgov"


def test_xavier_nx_levels_match_calibration() -> None:
    spec = load_device("xavier-nx")
    # CALIBRATION.md §2: 115200 … 1907200 kHz, 25 levels; GPU 15 levels 114.75 MHz … 1109.25 MHz.
    assert spec.n_cpu == 25 and spec.cpu_freqs_hz[0] == 115_200_000 and spec.cpu_freqs_hz[-1] == 1_907_200_000
    assert spec.n_gpu == 15 and spec.gpu_freqs_hz[0] == 114_750_000 and spec.gpu_freqs_hz[-1] == 1_109_250_000
    assert spec.cuda_cores == 384 and spec.cpu_cores == 6


def test_nano_levels_and_5w_mode() -> None:
    spec = load_device("jetson-nano")
    assert spec.n_cpu == 15 and spec.n_gpu == 12
    assert np.allclose(np.diff(spec.gpu_freqs_hz), 76_800_000)
    cpu, gpu, _ = spec.max_levels("5W")
    assert spec.cpu_freqs_hz[cpu] <= 918_000_000 < spec.cpu_freqs_hz[cpu + 1]
    assert spec.gpu_freqs_hz[gpu] <= 640_000_000 < spec.gpu_freqs_hz[gpu + 1]
    assert spec.power_mode("5W").cpu_online == 2


def test_unknown_device_lists_known_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"known devices: .*xavier-nx"):
        load_device("xavier-xn")


def test_unknown_power_mode() -> None:
    with pytest.raises(UnknownNameError, match="modes: "):
        load_device("xavier-nx").power_mode("100W")


def test_check_levels_names_the_range() -> None:
    spec = load_device("xavier-nx")
    spec.check_levels(24, 14, 7)
    with pytest.raises(SettingError, match=r"gpu level 15 .* 0\.\.14"):
        spec.check_levels(0, 15, 0)
    with pytest.raises(SettingError, match="cpu level -1"):
        spec.check_levels(-1, 0, 0)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d["gpu"].pop("levels_hz"), "missing required field 'gpu.levels_hz'"),
        (lambda d: d["cpu"].__setitem__("levels_khz", [2, 1]), "'cpu.levels_khz' must be strictly increasing"),
        (lambda d: d["cpu"].__setitem__("levels_khz", []), "'cpu.levels_khz' must be a non-empty list"),
        (lambda d: d["cpu"].__setitem__("cores", "six"), "'cpu.cores' must be an integer"),
        (lambda d: d["model"].__setitem__("static_w", -1.0), "'model.static_w' must be >= 0.0"),
        (lambda d: d["model"].__setitem__("mem_efficiency", 1.5), "'model.mem_efficiency' must be <= 1.0"),
        (lambda d: d["model"].__setitem__("staticw", 1.0), r"unknown field\(s\) \['staticw'\] in 'model'"),
        (lambda d: d["cpu"].__setitem__("governor", "turbo"), "'cpu.governor' must be one of"),
        (lambda d: d["power_modes"].__setitem__("default", "99W"), "'power_modes.default' must be one of"),
        (lambda d: d["thermal"].__setitem__("critical_c", 10.0), "'thermal.critical_c' must be >="),
    ],
)
def test_malformed_device_names_file_and_field(device_data, write_yaml, mutate, match) -> None:
    mutate(device_data)
    path = write_yaml(device_data)
    with pytest.raises(ConfigError, match=match) as info:
        load_device(path)
    assert str(path) in str(info.value)


def test_invalid_yaml_syntax(write_yaml) -> None:
    path = write_yaml("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_device(path)


def test_top_level_must_be_mapping(write_yaml) -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_device(write_yaml("- 1\n- 2\n"))


def test_scientific_notation_reads_as_number(device_data, write_yaml) -> None:
    path = write_yaml(device_data)
    text = path.read_text().replace("static_w: 3.6", "static_w: 3.6e0")
    path.write_text(text)
    assert load_device(path).model.static_w == pytest.approx(3.6)


def test_flat_index_of_a_tuple_and_of_arrays() -> None:
    spec = load_device("xavier-nx")
    assert spec.flat_index((0, 0, 0)) == 0
    last = spec.flat_index((spec.n_cpu - 1, spec.n_gpu - 1, spec.n_emc - 1))
    assert last == spec.n_cpu * spec.n_gpu * spec.n_emc - 1 and isinstance(last, int)
    levels = np.random.default_rng(0).integers(0, spec.n_levels, size=(50, 3))
    expected = np.ravel_multi_index(tuple(levels.T), spec.n_levels)
    assert np.array_equal(spec.flat_index(levels), expected)
    assert np.array_equal(spec.flat_index(np.asfortranarray(levels)), expected)
    assert [spec.flat_index(tuple(int(v) for v in row)) for row in levels] == expected.tolist()
    assert spec.flat_index(levels[0]) == expected[0]  # one (3,) array
