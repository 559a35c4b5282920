"""``tunebench data fetch`` and ``tunebench data verify``: the task data on a fresh machine."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlparse

from bench.cli.app import _print_table, command
from bench.core.errors import DataError


def _data_options(p) -> None:
    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    fetch = sub.add_parser(
        "fetch",
        help="download LM-BFF's datasets.tar (or build GLUE/SNLI from the hub), unpack "
        "original/, verify it",
        description="Download LM-BFF's datasets.tar (resumable; a partial download is kept as "
        "<file>.part), unpack its original/ folder safely into DEST, then verify every file "
        "against the known sha256 and LM-BFF's K=16 split checksums.",
    )
    fetch.add_argument(
        "--dest",
        type=Path,
        help="the data root to fill (default: $TUNEBENCH_DATA, else ./data/original)",
    )
    fetch.add_argument(
        "--url", help="where datasets.tar is (default: LM-BFF's URL; a mirror, or file:///...)"
    )
    fetch.add_argument(
        "--source",
        choices=["lmbff", "hf"],
        default="lmbff",
        help="lmbff: LM-BFF's datasets.tar (all 15 tasks); hf: the GLUE tasks and SNLI built "
        "from the Hugging Face hub with `datasets` (other bytes than LM-BFF's, see README)",
    )
    fetch.add_argument(
        "--keep-tar", action="store_true", help="keep the downloaded archive after unpacking"
    )
    fetch.add_argument("--quiet", action="store_true", help="no progress bar")
    verify = sub.add_parser(
        "verify",
        help="verify a data root: known sha256 of each file, LM-BFF's K=16 split checksums",
    )
    verify.add_argument(
        "dir",
        nargs="?",
        type=Path,
        help="data root (default: $TUNEBENCH_DATA, else ./data/original)",
    )


@command("data", "fetch LM-BFF's data (data fetch) or verify a data root (data verify)")(
    _data_options
)
def cmd_data(args) -> int:
    from tasks.fetch import default_dest

    if args.data_command == "verify":
        return _verify(args.dir or default_dest(), source="lmbff")
    return _fetch(args, args.dest or default_dest())


def _fetch(args, dest: Path) -> int:
    from tasks.fetch import LMBFF_URL, download, extract_original

    if args.source == "hf":
        from tasks.hub import HUB_TASKS, build_from_hub

        if args.url:
            raise DataError(
                "--url goes with --source lmbff (a datasets.tar); --source hf reads the hub"
            )
        print(
            f"building {', '.join(h.task for h in HUB_TASKS)} from the Hugging Face hub into {dest}"
        )
        build_from_hub(dest)
        return _verify(dest, source="hf")
    url = args.url or LMBFF_URL
    archive = dest.parent / (Path(urlparse(url).path).name or "datasets.tar")
    t0 = time.perf_counter()
    print(f"fetching {url} -> {archive}")
    ours = not archive.exists()  # an archive that was there before is never deleted
    download(url, archive, progress=not args.quiet)
    t1 = time.perf_counter()
    done = extract_original(archive, dest)
    t2 = time.perf_counter()
    print(
        f"unpacked original/ into {dest}: {done.added} files added, {done.same} already there "
        f"with the same bytes, {done.skipped} archive members outside original/ skipped "
        f"(download {t1 - t0:.1f} s, unpack {t2 - t1:.1f} s)"
    )
    code = _verify(dest, source="lmbff", archive=archive)
    if ours and not args.keep_tar:
        archive.unlink()
        print(f"removed {archive} (--keep-tar keeps it)")
    return code


def _verify(root: Path, *, source: str, archive: Path | None = None) -> int:
    from tasks.verify import verify

    t0 = time.perf_counter()
    result = verify(root)
    _print_table(result.rows(), list(result.rows()[0]))
    print(f"\n{root}: {result.summary()} ({time.perf_counter() - t0:.1f} s)")
    print(
        "sha256: the reference copy's files (tasks/data/README.md); K=16: LM-BFF's published "
        "data/k-shot/checksum, splits drawn again here"
    )
    if source == "hf":
        from tasks.hub import HUB_BY_TASK

        print("\nbuilt from the hub, so the bytes differ from LM-BFF's where the files do:")
        for name, spec in HUB_BY_TASK.items():
            print(
                f"  {name}: {spec.differs or 'the same columns as GLUE; rows as the hub holds them'}"
            )
        print(
            "mismatches above are those differences (the split rows are drawn the same way), "
            "not corruption; for LM-BFF's exact bytes use --source lmbff"
        )
        return 0
    if not result.ok:
        bad = [f for t in result.tasks for f in t.sha_bad + t.k16_bad]
        for name in bad[:20]:
            print(f"MISMATCH {name}")
        kept = f"; the archive is kept at {archive}: delete it to download again" if archive else ""
        raise DataError(
            f"{root}: {len(bad)} file(s) or split file(s) do not match their checksums "
            f"(listed above){kept}"
        )
    return 0
