"""The `e4gym` command: verbs print tables, bad input exits 2 with a message."""

from __future__ import annotations

import pytest

from e4gym.cli import main


def test_devices_lists_catalogue(capsys) -> None:
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    for name in ("jetson-nano", "xavier-nx", "agx-orin"):
        assert name in out


def test_calibrate_one_device(capsys) -> None:
    assert main(["calibrate", "--device", "orin-nano", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out and "FAIL" not in out and "rows pass" in out


def test_demo_prints_table(capsys) -> None:
    assert main(["demo", "--frames", "30", "--setting", "top", "--setting", "1190,803@2"]) == 0
    out = capsys.readouterr().out
    assert "top clocks, exit 4" in out and "CPU 1190 / GPU 803 MHz, exit 2" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--device", "nope"], "unknown device 'nope'"),
        (["demo", "--model", "vgg"], "unknown model 'vgg'"),
        (["demo", "--setting", "fast"], "expected top, min, default or CPU_MHZ"),
        (["demo", "--setting", "top@x"], "must be an integer"),
        (["demo", "--exit", "9"], "exits 0..4"),
        (["calibrate", "--device", "nope"], "unknown device"),
    ],
)
def test_bad_input_exits_2_with_message(argv, message, capsys) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_every_verb_is_listed(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for verb in ("devices", "calibrate", "demo", "profile", "train-exits", "record"):
        assert verb in out


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys) -> None:
    import e4gym.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt

    parser = cli.build_parser

    def patched(**kw):
        p = parser(**kw)
        parse = p.parse_args

        def parse_then_interrupt(argv):
            args = parse(argv)
            args.func = interrupted
            return args

        p.parse_args = parse_then_interrupt
        return p

    monkeypatch.setattr(cli, "build_parser", patched)
    assert cli.main(["devices"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err
