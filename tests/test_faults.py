"""Faults and bad input (issues 16 and 19): every case is a test of the exact message and exit
code. Bad arguments are answered before the heavy imports; a run's --out is claimed for the
whole run; a record that cannot be written after training is saved to a fallback path."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli.app import main
from bench.core import validate
from bench.core.errors import TunebenchError

TINY = ["--backbone", "tiny-bert", "--task", "trec", "--method", "finetune", "--k", "4"]
FAST = ["--set", "steps=2", "--set", "eval_every=1"]


def error_of(capsys, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    err = capsys.readouterr().err.strip()
    return rc, err


# --- arguments, checked before any heavy import ------------------------------------------------

METHODS = (
    "autoprompt, bitfit, finetune, head-only, in-context, lmbff-auto-label, lmbff-auto-template, "
    "lora, p-tuning, p-tuning-full, p-tuning-v2, prefix-tuning, prompt-finetune, "
    "prompt-finetune-demo, prompt-tuning, ptr, zero-shot"
)
BAD_ARGUMENTS = [
    (["run", "--method", "lorax"], f"unknown method 'lorax'; choose one of: {METHODS}"),
    (
        ["run", "--method", "lora", "--task", "sst2"],
        "unknown task 'sst2'; choose one of: CoLA, GLUE-SST-2, MNLI, MRPC, QNLI, QQP, RTE, "
        "SNLI, SST-2, STS-B, cr, mpqa, mr, sst-5, subj, trec",
    ),
    (
        ["run", "--method", "lora", "--backbone", "/some/abs/path"],
        "backbone '/some/abs/path' is neither a catalog name nor a hub id (org/name); for a "
        "local model folder write path:/some/abs/path",
    ),
    (
        ["run", "--method", "lora", "--backbone", "path:/no/such/dir"],
        "backbone 'path:/no/such/dir': /no/such/dir is not a model folder (no config.json); "
        "give path:DIR with a folder saved by transformers' save_pretrained",
    ),
    (
        ["run", "--method", "lora", "--seed", "-1"],
        "--seed -1: a seed must be an integer in [0, 4294967295]",
    ),
    (
        ["run", "--method", "lora", "--seed", "4294967296"],
        "--seed 4294967296: a seed must be an integer in [0, 4294967295]",
    ),
    (
        ["splits", "--task", "SST-2", "--seed", "-1", "--out", "x"],
        "--seed -1: a seed must be an integer in [0, 4294967295]",
    ),
    (
        ["run", "--method", "lora", "--k", "0"],
        "--k 0: K (examples per label) must be an integer >= 1",
    ),
    (
        ["splits", "--task", "SST-2", "--k", "-3", "--out", "x"],
        "--k -3: K (examples per label) must be an integer >= 1",
    ),
    (
        ["run", "--method", "lora", "--device", "gpu"],
        "--device 'gpu': expected cpu, cuda or cuda:N",
    ),
    (
        ["run", "--method", "lora", "--set", "lr=nan"],
        "--set lr='nan': expected a finite number > 0",
    ),
    (
        ["run", "--method", "lora", "--set", "lr=inf"],
        "--set lr='inf': expected a finite number > 0",
    ),
    (["run", "--method", "lora", "--set", "lr=0"], "--set lr='0': expected a finite number > 0"),
    (
        ["run", "--method", "lora", "--set", "steps=2.7"],
        "--set steps='2.7': expected an integer >= 1",
    ),
    (
        ["run", "--method", "lora", "--set", "steps=true"],
        "--set steps='true': expected an integer >= 1",
    ),
    (["run", "--method", "lora", "--set", "steps=0"], "--set steps='0': expected an integer >= 1"),
    (
        ["run", "--method", "lora", "--set", "steps=-4"],
        "--set steps='-4': expected an integer >= 1",
    ),
    (
        ["run", "--method", "lora", "--set", "eval_every=0"],
        "--set eval_every='0': expected an integer >= 1",
    ),
    (
        ["run", "--method", "lora", "--set", "batch_size=0"],
        "--set batch_size='0': expected an integer >= 1",
    ),
    (
        ["run", "--method", "lora", "--set", "grad_accum=0"],
        "--set grad_accum='0': expected an integer >= 1",
    ),
    (
        ["run", "--method", "lora", "--set", "max_length=-5"],
        "--set max_length='-5': expected an integer >= 0",
    ),
    (
        ["run", "--method", "lora", "--set", "warmup_ratio=1.5"],
        "--set warmup_ratio='1.5': expected a finite number in [0, 1]",
    ),
    (["run", "--method", "lora", "--set", "r=-1"], "--set r='-1': expected an integer >= 0"),
    (["run", "--method", "lora", "--set", "r=2.5"], "--set r='2.5': expected an integer >= 0"),
    (
        ["run", "--method", "lora", "--set", "dropout=1.5"],
        "--set dropout='1.5': expected a finite number in [0, 1]",
    ),
    (
        ["run", "--method", "lora", "--set", "head=mlp"],
        "--set head='mlp' is not allowed for method lora; choose one of ['classifier', 'lm']",
    ),
    (
        ["run", "--method", "autoprompt", "--set", "triggers=-2"],
        "--set triggers='-2': expected an integer >= 0",
    ),
    (["sweep", "smoke", "--workers", "0"], "--workers 0: expected an integer >= 1"),
    (["sweep", "smoke", "--workers", "-2"], "--workers -2: expected an integer >= 1"),
    (["sweep", "smoke", "--threads", "-1"], "--threads -1: expected an integer >= 1"),
]


@pytest.mark.parametrize("argv, message", BAD_ARGUMENTS, ids=lambda v: " ".join(v)[:60])
def test_bad_arguments_get_one_line_and_exit_2(capsys, argv, message):
    rc, err = error_of(capsys, *argv)
    assert (rc, err) == (2, f"tunebench: error: {message}")


def test_bad_arguments_are_answered_before_torch_is_imported():
    """The checks above run with nothing heavy imported (that took 4-10 s before)."""
    code = (
        "import sys; from bench.cli.app import main\n"
        "codes = [main(a) for a in (['run', '--method', 'lorax'], ['run', '--method', 'lora', "
        "'--seed', '-1'], ['run', '--method', 'lora', '--set', 'steps=0'], ['splits', '--task', "
        "'SST-2', '--k', '0', '--out', 'x'], ['run', '--method', 'lora', '--device', 'cuda:x'])]\n"
        "print(codes, [m for m in ('torch', 'transformers', 'pandas') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[2, 2, 2, 2, 2] []"


def test_the_name_index_is_the_registry_and_the_catalog():
    """The CLI reads method and backbone names from the sources (no import); they must be
    exactly what the registry and the catalog hold."""
    from bench.backbones.catalog import CATALOG
    from bench.cli.names import backbone_names, method_names
    from methods import REGISTRY

    assert method_names() == tuple(sorted(REGISTRY))
    assert backbone_names() == tuple(sorted(CATALOG))


def test_the_shared_settings_kinds_are_the_training_loops():
    from methods.base import COMMON

    assert set(validate.KINDS) == set(validate.RANGES) - {"dropout"}
    for key, kind in validate.KINDS.items():
        assert type(COMMON[key]) is type(kind), key


@pytest.mark.parametrize(
    "value, default, expected",
    [("3", 1, 3), ("1e-3", 0.1, 1e-3), (2, 1.0, 2.0), ("yes", False, True), ("x", "a", "x")],
)
def test_settings_parse_as_the_defaults_type(value, default, expected):
    got = validate.setting("k", value, default, "--set")
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize(
    "value, default, message",
    [
        (True, 1, "file [settings] k=True: expected an integer >= 0"),
        (2.0, 1, "file [settings] k=2.0: expected an integer >= 0"),
        ("3", 1.0, "file [settings] k='3': expected a finite number >= 0"),
        (float("nan"), 1.0, "file [settings] k=nan: expected a finite number >= 0"),
        (1, True, "file [settings] k=1: expected true or false"),
        (5, "a", "file [settings] k=5: expected a string"),
    ],
)
def test_typed_settings_must_have_the_exact_type(value, default, message):
    with pytest.raises(validate.SettingError) as e:
        validate.setting("k", value, default, "file [settings]")
    assert str(e.value) == message


# --- a run's output: claimed, checked writable, never lost ----------------------------------


def test_a_second_run_on_the_same_out_refuses_at_once(tmp_path, capsys, data_root):
    from bench.sweep.claims import claim

    out = tmp_path / "r.json"
    with claim(out) as held:  # another run holds the path
        assert held
        rc, err = error_of(capsys, "run", *TINY, *FAST, "--out", str(out))
    assert rc == 2
    assert err.startswith(f"tunebench: error: {out} is claimed by another run (pid {os.getpid()}")
    assert err.endswith("wait for it to finish or pass --out elsewhere")
    assert not out.exists()


def test_an_unwritable_output_folder_is_refused_before_training(tmp_path, capsys, data_root):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = blocker / "sub" / "r.json"  # its folder cannot be made: a file is in the way
    rc, err = error_of(capsys, "run", *TINY, *FAST, "--out", str(out))
    assert rc == 2
    assert err == (
        f"tunebench: error: cannot write to {out.parent} (Not a directory); fix its "
        "permissions or pass --out elsewhere (checked before training)"
    )


def test_a_write_failure_after_training_saves_the_record_to_a_fallback(
    tmp_path, capsys, monkeypatch, data_root, one_thread
):
    import bench.cli.commands as commands

    real = commands.atomic_write_json

    def full_disk(path, obj):
        if path.name == "r.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, obj)

    monkeypatch.setattr(commands, "atomic_write_json", full_disk)
    monkeypatch.setenv("TUNEBENCH_FALLBACK_DIR", str(tmp_path / "fallback"))
    out = tmp_path / "out" / "r.json"
    rc, err = error_of(capsys, "run", *TINY, *FAST, "--out", str(out))
    saved = list((tmp_path / "fallback").glob("r-*.json"))
    assert rc == 2 and len(saved) == 1
    assert err.splitlines()[-1] == (  # after the run's progress lines (one per dev evaluation)
        f"tunebench: error: cannot write {out} (No space left on device); the record is saved "
        f"at {saved[0]}; move it into place once fixed"
    )
    record = json.loads(saved[0].read_text())
    assert record["cell"]["method"] == "finetune" and record["status"] == "ok"
    assert not out.exists() and not out.with_suffix(".claim").exists()


def test_records_are_written_with_the_process_umask(tmp_path):
    from bench.core.io import atomic_write_json

    old = os.umask(0o027)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    atomic_write_json(tmp_path / "b.json", {"x": 1})
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o666 & ~old


def test_run_takes_allow_short(tmp_path, capsys, data_root, one_thread):
    out = tmp_path / "r.json"
    rc, err = error_of(capsys, "run", *TINY[:-1], "200", *FAST, "--out", str(out))
    assert rc == 2 and "use a smaller K or --allow-short to take what there is" in err
    rc = main(["run", *TINY[:-1], "200", *FAST, "--out", str(out), "--allow-short"])
    assert rc == 0 and json.loads(out.read_text())["status"] == "ok"


def test_an_error_is_a_tunebench_error():
    assert issubclass(validate.SettingError, TunebenchError)


def test_a_profile_string_is_not_a_number():
    with pytest.raises(validate.SettingError) as e:
        validate.setting("steps", "3", 1, "p.toml [settings]")
    assert str(e.value) == "p.toml [settings] steps='3': expected an integer >= 1"


# --- profiles: every value checked at --dry-run, never halfway through a sweep ---------------

BASE = 'backbones = ["tiny-roberta"]\ntasks = ["RTE"]\nk = [4]\nseeds = [13]\n'
ENTRY = '[[methods]]\nmethod = "finetune"\n'
BAD_PROFILES = [
    ("[settings]\nlr = nan\n" + ENTRY, "{p} [settings] lr=nan: expected a finite number > 0"),
    ("[settings]\nlr = inf\n" + ENTRY, "{p} [settings] lr=inf: expected a finite number > 0"),
    ("[settings]\nsteps = 0\n" + ENTRY, "{p} [settings] steps=0: expected an integer >= 1"),
    ("[settings]\nsteps = -3\n" + ENTRY, "{p} [settings] steps=-3: expected an integer >= 1"),
    ("[settings]\nsteps = true\n" + ENTRY, "{p} [settings] steps=True: expected an integer >= 1"),
    ("[settings]\nsteps = 2.7\n" + ENTRY, "{p} [settings] steps=2.7: expected an integer >= 1"),
    (
        "[settings]\neval_every = 0\n" + ENTRY,
        "{p} [settings] eval_every=0: expected an integer >= 1",
    ),
    (
        "[settings]\nbatch_size = 0\n" + ENTRY,
        "{p} [settings] batch_size=0: expected an integer >= 1",
    ),
    (
        "[settings]\ngrad_accum = 0\n" + ENTRY,
        "{p} [settings] grad_accum=0: expected an integer >= 1",
    ),
    (
        "[settings]\nmax_length = -5\n" + ENTRY,
        "{p} [settings] max_length=-5: expected an integer >= 0",
    ),
    (
        ENTRY + "settings = { lr = nan }\n",
        "{p} [[methods]] finetune settings lr=nan: expected a finite number > 0",
    ),
    ('[search]\ntrials = "3"\n' + ENTRY, "{p} [search] trials='3': expected an integer >= 1"),
    ("[search]\ntrials = 0\n" + ENTRY, "{p} [search] trials=0: expected an integer >= 1"),
    (
        '[search]\nmode = "grid"\ngrid = { lr = [] }\n' + ENTRY,
        "{p} [search].grid lr=[]: expected a non-empty list of values",
    ),
    (
        '[search]\nmode = "grid"\ngrid = { lr = [1e-5, nan] }\n' + ENTRY,
        "{p} [search.grid] lr=nan: expected a finite number > 0",
    ),
    (
        '[search]\nmode = "grid"\ngrid = { batch_size = [2, 2] }\n' + ENTRY,
        "{p} [search]: grid batch_size lists 2 twice; give each once",
    ),
    (
        ENTRY + 'estimate_s = "abc"\n',
        "{p} [[methods]] finetune estimate_s='abc': expected a finite number >= 0",
    ),
    (ENTRY + "trials = 1.5\n", "{p} [[methods]] finetune trials=1.5: expected an integer >= 1"),
    ("partial = 1\n" + ENTRY, "{p} partial=1: expected true or false"),
]
BAD_LISTS = [  # the profile's own lists
    ("seeds = [13, 21, 13]", "{p}: seeds lists 13 twice; give each once"),
    ("seeds = [-1]", "{p} seeds=-1: expected an integer in [0, 4294967295]"),
    ("seeds = [4294967296]", "{p} seeds=4294967296: expected an integer in [0, 4294967295]"),
    ("k = [4, 4]", "{p}: k lists 4 twice; give each once"),
    ("k = [0]", "{p} k=0: expected an integer >= 1"),
    ("k = [true]", "{p} k=True: expected an integer >= 1"),
    ('tasks = ["RTE", "rte"]', "{p}: tasks lists 'RTE' twice; give each once"),
    (
        'backbones = ["tiny-roberta", "tiny-roberta"]',
        "{p}: backbones lists 'tiny-roberta' twice; give each once",
    ),
    (
        'backbones = ["/some/abs/path"]',
        "backbone '/some/abs/path' is neither a catalog name nor a hub id (org/name); for a "
        "local model folder write path:/some/abs/path",
    ),
]


def _profile(tmp_path, text: str):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", BAD_PROFILES, ids=[m for _, m in BAD_PROFILES])
def test_a_bad_profile_value_fails_at_dry_run(tmp_path, capsys, text, message):
    path = _profile(tmp_path, BASE + text)
    rc, err = error_of(capsys, "sweep", str(path), "--dry-run", "--results", str(tmp_path))
    assert (rc, err) == (2, "tunebench: error: " + message.format(p=f"profile {path}"))


@pytest.mark.parametrize("line, message", BAD_LISTS, ids=[m for _, m in BAD_LISTS])
def test_a_duplicate_or_bad_list_is_named_as_what_it_is(tmp_path, capsys, line, message):
    key = line.split(" ")[0]
    base = "\n".join(x for x in BASE.splitlines() if not x.startswith(key + " "))
    path = _profile(tmp_path, f"{base}\n{line}\n{ENTRY}")
    rc, err = error_of(capsys, "sweep", str(path), "--dry-run", "--results", str(tmp_path))
    assert (rc, err) == (2, "tunebench: error: " + message.format(p=f"profile {path}"))


# --- the journal and a full disk ---------------------------------------------------------------

SMALL = (
    'backbones = ["tiny-bert"]\ntasks = ["trec"]\nk = [4]\nseeds = [13, 21]\n'
    "[search]\ntrials = 2\n[settings]\nsteps = 2\neval_every = 1\n"
    '[[methods]]\nmethod = "finetune"\n'
)


def _records(results):
    return {
        p.relative_to(results).as_posix(): json.loads(p.read_text())
        for p in results.rglob("*.json")
        if not p.name.startswith(".")
    }


def test_a_torn_journal_tail_is_moved_aside_and_the_journal_works_again(tmp_path, capsys):
    import optuna

    from bench.sweep import journal
    from bench.sweep.search import open_storage

    path = tmp_path / "p" / "optuna.journal"
    optuna.create_study(storage=open_storage(path), study_name="a")
    good = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b'{"op_cod')  # a write cut short by a full disk
    with journal.guard(tmp_path / "p", path) as notes:
        pass
    aside = list(path.parent.glob("optuna.journal.torn-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b'{"op_cod'
    assert notes == [
        f"repaired {path}: its last 8 bytes were a torn write (a full disk or a kill); moved "
        f"them to {aside[0]}"
    ]
    assert capsys.readouterr().err.splitlines()[-1] == f"tunebench: {notes[0]}"
    assert path.read_bytes() == good  # never appended to: the next write starts a new line
    optuna.create_study(storage=open_storage(path), study_name="b")
    assert [s.study_name for s in optuna.get_all_study_summaries(open_storage(path))] == ["a", "b"]


def test_stale_locks_and_orphan_temporary_records_are_cleaned_at_start(tmp_path):
    from bench.sweep import journal

    folder = tmp_path / "p"
    cell = folder / "tiny-bert" / "trec" / "finetune"
    cell.mkdir(parents=True)
    orphan = cell / ".k4-seed13.json.abc123.tmp"
    orphan.write_text("{")
    lock = folder / "optuna.journal.lock"
    os.symlink(folder / "optuna.journal", lock)
    with journal.guard(folder, folder / "optuna.journal") as first:
        assert first == [
            f"removed a stale Optuna lock {lock} (left by a killed writer)",
            "removed 1 temporary file(s) of records cut short by a kill",
        ]
        assert not orphan.exists() and not os.path.lexists(lock)
        orphan.write_text("{")  # a running sweep's own temporary file
        with journal.guard(folder, folder / "optuna.journal") as second:
            assert second == [] and orphan.exists()  # others run: nothing is touched


def test_low_free_space_stops_the_sweep_before_a_cell(tmp_path, capsys, monkeypatch, data_root):
    monkeypatch.setenv("TUNEBENCH_MIN_FREE_MB", "1e12")
    path = _profile(tmp_path, SMALL)
    rc, err = error_of(
        capsys, "sweep", str(path), "--results", str(tmp_path / "r"), "--no-progress"
    )
    assert rc == 2
    assert err.startswith("tunebench: error: only ") and err.endswith(
        "(a cell needs 1e+12 MiB, $TUNEBENCH_MIN_FREE_MB); free space and rerun: finished "
        "cells are kept and the sweep resumes where it stopped"
    )
    assert _records(tmp_path / "r") == {}


def test_a_failed_write_never_produces_a_record(tmp_path, capsys, monkeypatch, data_root):
    from bench.sweep import search

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "optuna.journal")

    monkeypatch.setattr(search, "run_search", full)
    path = _profile(tmp_path, SMALL)
    rc, err = error_of(
        capsys, "sweep", str(path), "--results", str(tmp_path / "r"), "--no-progress"
    )
    assert (rc, err) == (
        2,
        "tunebench: error: stopped at cell tiny-bert/trec/finetune/k4-seed13: No space left on "
        "device (optuna.journal); free space (or fix the disk) and rerun: finished cells are "
        "kept and the sweep resumes where it stopped",
    )
    assert _records(tmp_path / "r") == {}  # not a "failed" record: the cell is still to do


def _mount_tmpfs(where, size: str) -> bool:
    where.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


def test_a_full_disk_stops_cleanly_and_the_sweep_finishes_once_space_is_freed(
    tmp_path, capsys, monkeypatch, data_root, one_thread
):
    """Issue 19's sequence on a 2 MB tmpfs: fill it, run twice, free it, run."""
    mnt = tmp_path / "mnt"
    if not _mount_tmpfs(mnt, "2m"):
        pytest.skip("mounting a tmpfs is not allowed here (needs root; CI runs as root)")
    try:
        monkeypatch.setenv("TUNEBENCH_MIN_FREE_MB", "0")  # exercise the write errors themselves
        profile, results = _profile(tmp_path, SMALL), mnt / "r"
        argv = ["sweep", str(profile), "--results", str(results), "--no-progress"]
        assert main([*argv, "--seeds", "13"]) == 0  # one cell done, then the disk fills up
        capsys.readouterr()
        filler = mnt / "filler"
        with open(filler, "wb") as f:
            f.write(b"\0" * (os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize - 4096))
        for _ in range(2):
            rc, err = error_of(capsys, *argv)
            assert rc == 2 and err.splitlines()[-1].startswith("tunebench: error: stopped ")
            assert "No space left on device" in err and "Traceback" not in err
            assert all(r["status"] == "ok" for r in _records(results).values())
        filler.unlink()
        assert main(argv) == 0
        records = _records(results)
        assert len(records) == 2 and all(r["status"] == "ok" for r in records.values())
        assert all(len(r["trials"]) == 2 for r in records.values())
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# --- names become safe paths inside --results -----------------------------------------------


def test_record_paths_stay_inside_results(tmp_path):
    from bench.core.paths import PathError, component, inside
    from bench.sweep.profile import SweepCell
    from bench.sweep.search import SearchConfig

    def cell(backbone, label="finetune", profile="p"):
        return SweepCell(profile, backbone, "RTE", "finetune", label, "full", 4, 13, False, {},
                         SearchConfig(), None)  # fmt: skip

    r = tmp_path / "r"
    assert cell("org/model").record_path(r) == r / "p/org--model/RTE/finetune/k4-seed13.json"
    local = cell("path:/some/abs/path").record_path(r)
    assert local.parent.parent.parent.name.startswith("path-path-") and r in local.parents
    assert cell("x", label="a/../../b").record_path(r).parent.name == "a--..--..--b"
    with pytest.raises(PathError, match=r"name '\.\.' cannot be a file or folder name"):
        component("..")
    with pytest.raises(PathError, match="would be written outside"):
        inside(r, r / ".." / "x.json")


def test_a_local_model_folder_is_a_path_backbone(tmp_path, capsys, monkeypatch, data_root):
    from bench.backbones.catalog import get_spec, load_backbone

    b = load_backbone("tiny-bert")
    folder = tmp_path / "my model"
    b.model.save_pretrained(folder)
    b.tokenizer.save_pretrained(folder)
    spec = get_spec(f"path:{folder}")
    assert (spec.source, spec.hub_id) == ("path", None)
    assert load_backbone(f"path:{folder}").kind == "mlm"  # read from its config
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--backbone", f"path:{folder}", *TINY[2:], *FAST]) == 0
    digest = hashlib.sha256(str(folder).encode()).hexdigest()[:8]
    written = [p.relative_to(tmp_path) for p in (tmp_path / "results").rglob("*.json")]
    assert written == [Path(f"results/runs/path-my_model-{digest}/trec/finetune/k4-seed13.json")]


# --- data files: exact file:line(:column), labels as text, empty text -------------------------

SST2_OK = "sentence\tlabel\n" + "".join(f"row {i} text\t{i % 2}\n" for i in range(8))
CSV_OK = "".join(f"{i % 2},row {i} text\n" for i in range(8))


def _data(tmp_path, task: str, files: dict[str, str | bytes]):
    """A data root holding one task whose files are ``files`` (str or bytes)."""
    root = tmp_path / "original"
    folder = root / task
    folder.mkdir(parents=True)
    for name, body in files.items():
        (folder / name).write_bytes(body.encode() if isinstance(body, str) else body)
    return root, folder


def _long_tsv_with_bad_byte_at(line: int) -> bytes:
    rows = [
        f"a sentence long enough to pass a decoder chunk, number {i}\t{i % 2}\n" for i in range(800)
    ]
    body = ("sentence\tlabel\n" + "".join(rows)).encode()
    lines = body.split(b"\n")
    lines[line - 1] = b"a caf\xe9 sentence\t1"  # latin-1, not UTF-8: line ``line``, column 6
    return b"\n".join(lines)


DATA_CASES = [
    (
        "SST-2",
        {"train.tsv": _long_tsv_with_bad_byte_at(500), "dev.tsv": SST2_OK},
        "{d}/train.tsv:500:6: bytes that are not UTF-8 (invalid continuation byte: b'\\xe9'); "
        "re-encode the file as UTF-8",
    ),
    (
        "mr",
        {"train.csv": CSV_OK + "1.0,a row\n" + CSV_OK, "test.csv": CSV_OK},
        "{d}/train.csv:9: label '1.0' is not one of task mr's labels (0, 1; compared as text)",
    ),
    (
        "mr",
        {"train.csv": CSV_OK + ",a row\n", "test.csv": CSV_OK},
        "{d}/train.csv:9: label '' is not one of task mr's labels (0, 1; compared as text)",
    ),
    (
        "mr",
        {"train.csv": CSV_OK, "test.csv": CSV_OK + '0,"two\nlines"\n1,NaN\n'},
        "{d}/test.csv:11: field 2 is empty (NaN); every row of task mr needs text there",
    ),
    (
        "mr",
        {"train.csv": CSV_OK + "1,a \0 NUL\n", "test.csv": CSV_OK},
        "{d}/train.csv:9: field 2 holds a NUL byte; remove it (a text file has none)",
    ),
    (
        "SST-2",
        {"train.tsv": SST2_OK + "\t1\n", "dev.tsv": SST2_OK},
        "{d}/train.tsv:10: field 1 ('sentence') is empty (''); every row of task SST-2 needs "
        "text there",
    ),
    (
        "SST-2",
        {"train.tsv": SST2_OK + "   \t1\n", "dev.tsv": SST2_OK},
        "{d}/train.tsv:10: field 1 ('sentence') is empty ('   '); every row of task SST-2 "
        "needs text there",
    ),
    (
        "SST-2",
        {"train.tsv": "sentence\tlabel\n" + "\t0\n\t1\n" * 4, "dev.tsv": SST2_OK},
        "{d}/train.tsv:2: field 1 ('sentence') is empty (''); every row of task SST-2 needs "
        "text there",
    ),
    (
        "SST-2",
        {"train.tsv": SST2_OK + "a\0b\t1\n", "dev.tsv": SST2_OK},
        "{d}/train.tsv:10:2: a NUL byte; remove it (a text file has none)",
    ),
    (
        "SST-2",
        {"train.tsv": SST2_OK, "dev.tsv": "sentence\tlabel\n"},
        "task SST-2: test file {d}/dev.tsv has no rows (empty, or only a header); a split "
        "needs its test set: restore the file",
    ),
    (
        "mr",
        {"train.csv": CSV_OK, "test.csv": ""},
        "task mr: test file {d}/test.csv has no rows (empty, or only a header); a split needs "
        "its test set: restore the file",
    ),
    (
        "mr",
        {"train.csv": "", "test.csv": CSV_OK},
        "task mr: training file {d}/train.csv has no rows (empty, or only a header); restore "
        "the file",
    ),
    (
        "mr",
        {"train.csv": CSV_OK + "1,a,b\n", "test.csv": CSV_OK},
        "{d}/train.csv:9: 3 fields; expected 2 ('label,sentence', no header)",
    ),
]


@pytest.mark.parametrize("task, files, message", DATA_CASES, ids=[m[:50] for _, _, m in DATA_CASES])
def test_a_data_defect_is_named_at_its_line(tmp_path, capsys, task, files, message):
    root, folder = _data(tmp_path, task, files)
    argv = ["splits", "--task", task, "--k", "1", "--seed", "13", "--out", str(tmp_path / "o")]
    rc, err = error_of(capsys, *argv, "--data-dir", str(root))
    assert (rc, err) == (2, "tunebench: error: " + message.format(d=folder))


def test_empty_text_a_task_allows_is_counted_once_per_file(tmp_path, capsys):
    """cr's original data has whitespace-only reviews (one space): kept, as LM-BFF keeps them,
    and reported once per file however many seeds are drawn."""
    root, folder = _data(tmp_path, "cr", {"train.csv": CSV_OK + "1, \n0,\n", "test.csv": CSV_OK})
    argv = ["splits", "--task", "cr", "--k", "1", "--seed", "13", "--seed", "21"]
    assert main([*argv, "--out", str(tmp_path / "o"), "--data-dir", str(root)]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == [
        f"note: {folder}/train.csv: 2 row(s) with empty text, kept (task cr's original data "
        "has them; LM-BFF keeps them)"
    ]


def test_the_real_cr_and_mpqa_keep_their_empty_texts(data_root):
    from tasks import get_task
    from tasks.splits import sample_split

    for task, counts in (("cr", ["3", "1"]), ("mpqa", ["3"])):
        split = sample_split(get_task(task), 16, 13, data_root)
        assert [n.split(": ")[1].split(" ")[0] for n in split.notes] == counts


def test_a_non_finite_number_in_a_record_fails_the_cell_not_the_sweep(
    tmp_path, capsys, monkeypatch, data_root, one_thread
):
    from bench.sweep import driver

    real = driver.run_cell

    def nan_in_record(cell, ctx):
        record = real(cell, ctx)
        record["time"]["search_s"] = float("nan")
        return record

    monkeypatch.setattr(driver, "run_cell", nan_in_record)
    path = _profile(tmp_path, SMALL)
    assert main(["sweep", str(path), "--results", str(tmp_path / "r"), "--no-progress"]) == 0
    records = _records(tmp_path / "r")
    assert len(records) == 2
    for r in records.values():
        assert r["status"] == "failed" and r["time"]["search_s"] is None
        assert (
            r["error"]
            == "the record held a non-finite number (Out of range float values are not JSON compliant: nan)"
        )


def test_a_sweep_into_an_unwritable_results_folder_is_one_line(tmp_path, capsys, data_root):
    blocker = tmp_path / "file"
    blocker.write_text("")
    path = _profile(tmp_path, SMALL)
    rc, err = error_of(capsys, "sweep", str(path), "--results", str(blocker / "r"))
    assert (rc, err) == (
        2,
        f"tunebench: error: cannot write to the results folder {blocker}/r/bad (Not a "
        "directory); fix its permissions or pass --results elsewhere",
    )


def test_cuda_on_a_machine_without_it_is_one_line(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for argv in (["run", "--method", "lora"], ["sweep", "smoke", "--dry-run"]):
        rc, err = error_of(capsys, *argv, "--device", "cuda")
        assert (rc, err) == (
            2,
            "tunebench: error: --device cuda: no CUDA device here; use --device cpu",
        )


def test_a_journal_damaged_in_the_middle_is_named_not_a_traceback(tmp_path):
    import optuna

    from bench.sweep.search import open_storage

    path = tmp_path / "optuna.journal"
    study = optuna.create_study(storage=open_storage(path), study_name="a")
    study.tell(study.ask(), 1.0)
    lines = path.read_bytes().splitlines(keepends=True)
    assert len(lines) > 2
    path.write_bytes(b'{"op_cod' + lines[0] + b"".join(lines[1:]))  # what the old code left
    with pytest.raises(TunebenchError) as e:
        open_storage(path)
    assert str(e.value).startswith(f"the Optuna journal {path} is damaged (")
    assert str(e.value).endswith(
        "); move it aside to start the searches of unfinished cells afresh (finished cells keep "
        "their records)"
    )


def test_two_run_processes_on_one_out_path(tmp_path, capsys, data_root):
    """The issue's case: two `run`s at once on the same --out; the second refuses at once,
    the first finishes and its record is the one on disk."""
    import time

    out = tmp_path / "r.json"
    argv = [sys.executable, "-m", "bench", "run", *TINY, "--set", "steps=40", "--out", str(out)]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not out.with_suffix(".claim").exists() and first.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rc, err = error_of(capsys, "run", *TINY, *FAST, "--out", str(out))
    stdout, stderr = first.communicate(timeout=600)
    assert rc == 2 and f"{out} is claimed by another run (pid {first.pid} " in err, err
    assert first.returncode == 0, stderr
    assert stdout.strip().endswith(f"-> {out}")
    assert json.loads(out.read_text())["config"]["hyperparameters"]["steps"] == 40


def test_an_out_that_is_a_folder_is_refused(tmp_path, capsys):
    rc, err = error_of(capsys, "run", *TINY, *FAST, "--out", str(tmp_path))
    assert (rc, err) == (
        2,
        f"tunebench: error: --out {tmp_path} is a folder; give the record's file path",
    )
