"""LeRobot v2.1 datasets (the layout of Unitree's ``unitree_IL_lerobot`` and most G1 datasets in circulation) → a
v3.0 copy made by lerobot's own converter, so they read through ``LeRobotDataset`` like any other.

v2.1 layout (``meta/info.json`` ``codebase_version`` "v2.1")::

    meta/info.json  meta/episodes.jsonl  meta/tasks.jsonl  meta/episodes_stats.jsonl
    data/chunk-000/episode_000000.parquet
    videos/chunk-000/<video_key>/episode_000000.mp4

The source folder is never written: it is copied (files hard-linked where possible — the converter only reads
them) into a work folder, the copy is converted in place by ``lerobot.scripts.convert_dataset_v21_to_v30``
(offline, ``root=`` a local folder, no hub push), and the result is moved atomically into the cache folder. Episodes
whose data or video files are missing are named in the error; with ``skip_bad`` they are left out of the copy (the
remaining ones renumbered, their original indices kept in ``meta/dexworld_v21.json``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from embodiments.io_utils import atomic_dir

V21 = "v2.1"
V30 = "v3.0"
ORIGIN = "meta/dexworld_v21.json"
CACHE_ENV = "DEXWORLD_CACHE"

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Converted:
    """A v3.0 copy of a v2.1 dataset.

    Attributes:
        root: the v3.0 copy.
        source: the v2.1 folder it was made from.
        episodes: original episode index of each episode in the copy (copy index → source index).
        skipped: (source episode index, reason) of episodes left out.
    """

    root: Path
    source: Path
    episodes: list[int]
    skipped: list[tuple[int, str]]


def codebase_version(root: str | os.PathLike) -> str:
    """``codebase_version`` of the dataset at ``root`` (from ``meta/info.json``)."""
    info = _read_json(Path(root) / "meta" / "info.json")
    version = info.get("codebase_version")
    if not isinstance(version, str):
        raise ValueError(f"{Path(root) / 'meta/info.json'}: no codebase_version string")
    return version


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no LeRobot dataset at {path.parent.parent} ({path.name} missing)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise FileNotFoundError(f"v2.1 dataset file {path} is missing") from None
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {i + 1} is not valid JSON: {e}") from None
        if not isinstance(row, dict) or not isinstance(row.get("episode_index", row.get("task_index")), int):
            raise ValueError(f"{path} line {i + 1}: expected an object with an integer index")
        rows.append(row)
    return rows


def _inside(root: Path, rel: str, what: str) -> Path:
    """``root / rel``, refusing paths from metadata that leave ``root``."""
    path = (root / rel).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ValueError(f"{root / 'meta/info.json'}: {what} path {rel!r} leaves the dataset folder")
    return path


def episode_files(root: str | os.PathLike) -> dict[int, dict[str, Path]]:
    """Source episode index → its data file and one video file per video key, from ``info.json``'s templates."""
    root = Path(root)
    info = _read_json(root / "meta" / "info.json")
    chunk = int(info.get("chunks_size", 1000))
    data_t, video_t = info.get("data_path"), info.get("video_path")
    if not isinstance(data_t, str):
        raise ValueError(f"{root / 'meta/info.json'}: no data_path template")
    vkeys = [k for k, f in (info.get("features") or {}).items() if isinstance(f, dict) and f.get("dtype") == "video"]
    out = {}
    for row in _read_jsonl(root / "meta" / "episodes.jsonl"):
        i = row["episode_index"]
        files = {"data": _inside(root, data_t.format(episode_chunk=i // chunk, episode_index=i), "data")}
        for key in vkeys:
            rel = video_t.format(episode_chunk=i // chunk, video_key=key, episode_index=i)
            files[key] = _inside(root, rel, "video")
        out[i] = files
    return out


def check_episodes(root: str | os.PathLike) -> dict[int, str]:
    """Episodes whose data or video files are missing: source index → a reason naming the files."""
    bad = {}
    for i, files in episode_files(root).items():
        missing = [f"{k} {p.relative_to(Path(root).resolve())}" for k, p in files.items() if not p.is_file()]
        if missing:
            bad[i] = "missing " + ", ".join(missing)
    return bad


def default_cache(source: Path) -> Path:
    """Cache folder of a source's v3.0 copy: ``$DEXWORLD_CACHE`` (default ``~/.cache/dexworld``)/lerobot_v30/…,
    keyed by the source's absolute path and its info.json's modification time."""
    base = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "dexworld")
    src = source.resolve()
    stamp = f"{src}|{(src / 'meta' / 'info.json').stat().st_mtime_ns}"
    return base / "lerobot_v30" / f"{src.name}-{hashlib.sha1(stamp.encode()).hexdigest()[:12]}"


def convert_v21(source: str | os.PathLike, dest: str | os.PathLike | None = None, skip_bad: bool = False,
                repo_id: str | None = None) -> Converted:
    """A v3.0 copy of the v2.1 dataset at ``source`` (made once, then reused), without writing ``source``.

    ``dest`` defaults to :func:`default_cache`. Episodes with missing files raise a ``ValueError`` naming them,
    unless ``skip_bad`` (then they are left out and reported in ``Converted.skipped``).
    """
    source = Path(source)
    version = codebase_version(source)
    if version != V21 and not is_he_copy(_read_json(source / "meta" / "info.json")):
        raise ValueError(f"{source}: codebase_version {version!r}, expected {V21!r} for conversion")
    dest = Path(dest) if dest is not None else default_cache(source)
    if dest.exists() and not _is_copy_of(dest, source) and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(f"convert folder {dest} exists and is not a converted copy of {source}; choose a new "
                         "or empty folder")
    done = _load_origin(dest, source, skip_bad)
    if done is not None:
        return done
    bad = check_episodes(source)
    if bad and not skip_bad:
        lines = "; ".join(f"episode {i}: {why}" for i, why in sorted(bad.items()))
        raise ValueError(f"{source}: {len(bad)} episode(s) with missing files ({lines}); pass --skip-bad to leave "
                         "them out")
    keep = [i for i in sorted(episode_files(source)) if i not in bad]
    if not keep:
        raise ValueError(f"{source}: no episode has all its files")
    from lerobot.scripts.convert_dataset_v21_to_v30 import convert_dataset

    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.work-", dir=dest.parent) as tmp:
        work = Path(tmp) / source.name
        _copy_subset(source, work, keep)
        logging.getLogger("lerobot").setLevel(logging.WARNING)
        convert_dataset(repo_id or f"local/{source.name}", root=work, push_to_hub=False, force_conversion=True)
        origin = {"source": str(source.resolve()), "episodes": keep, "skip_bad": skip_bad,
                  "skipped": [[i, why] for i, why in sorted(bad.items())]}
        (work / ORIGIN).write_text(json.dumps(origin, indent=1))
        with atomic_dir(dest) as out:
            out.rmdir()
            shutil.move(str(work), str(out))
    for i, why in sorted(bad.items()):
        log.warning("%s: skipped episode %d: %s", source, i, why)
    return Converted(dest, source, keep, sorted(bad.items()))


def _is_copy_of(dest: Path, source: Path) -> bool:
    return (dest / ORIGIN).is_file() and _read_json(dest / ORIGIN).get("source") == str(source.resolve())


def _load_origin(dest: Path, source: Path, skip_bad: bool) -> Converted | None:
    path = dest / ORIGIN
    if not path.is_file():
        return None
    data = _read_json(path)
    if data.get("source") != str(source.resolve()) or (data.get("skipped") and not skip_bad):
        return None
    if sorted(int(i) for i, _ in data["skipped"]) != sorted(check_episodes(source)):  # files came back or went
        return None
    return Converted(dest, source, [int(i) for i in data["episodes"]], [(int(i), str(w)) for i, w in data["skipped"]])


def needs_conversion(root: str | os.PathLike) -> bool:
    """True for a v2.1 dataset or a Humanoid Everyday copy (v2.x layout), which :func:`convert_v21` reads."""
    info = _read_json(Path(root) / "meta" / "info.json")
    version = str(info.get("codebase_version", ""))
    return version == V21 or (version.lstrip("v").startswith("2.") and is_he_copy(info))


def is_he_copy(info: dict) -> bool:
    """A Humanoid Everyday LeRobot copy (their ``he2lerobot.py``: codebase_version "2.0.1", arm/hand joint features,
    ``video_info``, videos under ``videos/chunk-*/egocentric/``)."""
    feats = info.get("features") or {}
    return "observation.arm_joints" in feats and "observation.hand_joints" in feats


# Columns of Humanoid Everyday copies that have no fixed shape (or are large) and are not read: left out of the copy.
HE_DROPPED = ("observation.depth.egocentric", "observation.lidar", "observation.tactile")


def _copy_subset(source: Path, work: Path, keep: list[int]) -> None:
    """Copy ``source`` to ``work`` in the strict v2.1 layout lerobot's converter expects, with only episodes
    ``keep``, renumbered 0…n−1 (files hard-linked when kept as they are).

    Humanoid Everyday copies are brought to that layout on the way: videos moved under their feature key,
    ``video_info`` → ``info``, variable shapes ([-1]) fixed from the data, untyped columns (depth, lidar, tactile)
    dropped, integer task references replaced by the task text, per-episode ``index`` made global.
    """
    info = _read_json(source / "meta" / "info.json")
    files = episode_files(source)
    he = is_he_copy(info)
    renumber = he or keep != sorted(files)
    (work / "meta").mkdir(parents=True)
    chunk = int(info.get("chunks_size", 1000))
    new_index = {old: new for new, old in enumerate(keep)}
    episodes = [r for r in _read_jsonl(source / "meta" / "episodes.jsonl") if r["episode_index"] in new_index]
    stats = {r["episode_index"]: r for r in _read_jsonl(source / "meta" / "episodes_stats.jsonl")}
    tasks = _read_jsonl(source / "meta" / "tasks.jsonl")
    if he:
        text = {t["task_index"]: str(t.get("description") or t.get("task") or "") for t in tasks}
        tasks = [{"task_index": i, "task": t} for i, t in enumerate(dict.fromkeys(text.values()))]
        episodes = [{"episode_index": r["episode_index"], "length": int(r["length"]),
                     "tasks": [text.get(x, str(x)) if isinstance(x, int) else str(x) for x in r.get("tasks", [])]}
                    for r in episodes]
        info["codebase_version"] = V21
        info["video_path"] = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
        for key in HE_DROPPED:
            info["features"].pop(key, None)
    for r in episodes:
        r["episode_index"] = new_index[r["episode_index"]]
    _write_jsonl(work / "meta" / "tasks.jsonl", tasks)
    _write_jsonl(work / "meta" / "episodes.jsonl", episodes)
    _write_jsonl(work / "meta" / "episodes_stats.jsonl",
                 [{"episode_index": new_index[i], "stats": _keep_stats(stats.get(i, {}).get("stats", {}), info)}
                  for i in keep])
    offset = 0
    lengths = {r["episode_index"]: int(r["length"]) for r in episodes}
    widths: dict[str, int] = {}
    for old in keep:
        new = new_index[old]
        for key, src in files[old].items():
            if key == "data":
                rel = info["data_path"].format(episode_chunk=new // chunk, episode_index=new)
            else:
                rel = info["video_path"].format(episode_chunk=new // chunk, video_key=key, episode_index=new)
            dst = work / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if key == "data" and renumber:
                for col, n in _rewrite_parquet(src, dst, new, offset, HE_DROPPED if he else ()).items():
                    if widths.setdefault(col, n) != n:
                        raise ValueError(f"{source}: {col} has {widths[col]} values in earlier episodes but {n} in "
                                         f"episode {old} (mixed robots?); import the robots' episodes separately")
            else:
                _link_or_copy(src, dst)
        offset += lengths[new]
    for key, ft in info["features"].items():
        if ft.get("dtype") == "video" and "info" not in ft:
            ft["info"] = {**ft.pop("video_info", {}), "video.height": ft["shape"][0], "video.width": ft["shape"][1],
                          "video.channels": ft["shape"][2]}
        elif key in widths and (list(ft.get("shape", [])) == [-1] or (he and len(ft.get("shape", [])) == 1)):
            ft["shape"] = [widths[key]]
    info["total_episodes"] = len(keep)
    info["total_frames"] = offset
    info["total_videos"] = len(keep) * sum(1 for k in files[keep[0]] if k != "data")
    info["total_chunks"] = (len(keep) - 1) // chunk + 1
    info["total_tasks"] = len(tasks)
    info["splits"] = {"train": f"0:{len(keep)}"}
    (work / "meta" / "info.json").write_text(json.dumps(info, indent=4))


def _keep_stats(stats: dict, info: dict) -> dict:
    return {k: v for k, v in stats.items() if k in info["features"]}


def _rewrite_parquet(src: Path, dst: Path, episode: int, offset: int, drop: tuple[str, ...]) -> dict[str, int]:
    """Copy one episode's parquet with its episode index and global frame indices rewritten and ``drop`` columns
    left out; returns the width of each list column (checked constant)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(src)
    table = table.drop_columns([c for c in drop if c in table.column_names])
    n = table.num_rows
    for name, values in (("episode_index", [episode] * n), ("index", list(range(offset, offset + n)))):
        if name in table.column_names:
            col = table.schema.get_field_index(name)
            table = table.set_column(col, table.schema.field(col), pa.array(values, table.schema.field(col).type))
    widths = {}
    for name in table.column_names:
        if pa.types.is_list(table.schema.field(name).type) and n:
            lens = pc.unique(pc.list_value_length(table.column(name))).to_pylist()
            if len(lens) != 1:
                raise ValueError(f"{src}: column {name} changes length within the episode ({lens})")
            widths[name] = int(lens[0])
    pq.write_table(table.replace_schema_metadata(None), dst)
    return widths


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)

