"""The saved result of ``cass-actions validate``: an unchanged catalogue is not checked twice.

A cold run builds and checks the whole catalogue while recording what it depended on: every
file opened and every folder listed while it ran (seen through an audit hook), every
environment variable looked up, the file of every module imported, every file and folder of
each loaded pack's package, and the folders on the Python path. The report (counts, problems,
warnings) is saved with that record, under a key made of what is known before anything is
loaded: the cass-actions version, the interpreter and its path, the working folder, the
configuration as loaded (and the file it came from), the ``CASS_ACTIONS_*`` variables, the
template files given, and every pack's entry point, distribution and version.

A warm run still discovers the entry points (a pack installed, removed or upgraded gives
another key) and loads the configuration, then finds the entry for its key and confirms
that nothing recorded changed: each file's size and modification time (and its content hash,
for a file modified within two seconds of being recorded, when the time alone proves
nothing), each folder's modification time (and its listing, likewise), each variable's
value. Only then is the saved report printed: the same text, JSON and exit code as a fresh
run. Anything else, or any doubt (an unreadable entry, a missing file), checks afresh.

Never saved: a report with a pack that failed to load or a handler that failed to import
(the cause may lie outside every recorded file, such as a missing dependency), a run during
which a recorded file changed or a pack used the network or started a program (no file
records what they answered), or a run in a process that had imported a pack before (what
its import read was not seen). Entries live in ``<cache folder>/validate-<version>/``, at
most :data:`KEEP`, the least recently used dropped first; only ``validate`` writes them.
``cass-actions validate --no-cache`` neither reads nor writes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from cass_actions_core.problems import Problem
from cass_actions_core.schema_files import cache_root

if TYPE_CHECKING:
    from cass_actions_core.catalogue import Catalogue
    from cass_actions_core.config import Config
    from cass_actions_core.plugins import FoundEntryPoint, PluginRecord

#: Bumped whenever the entry layout or what a key covers changes.
FORMAT = 1

#: Most saved reports kept (one per configuration, set of packs and template files ...).
KEEP = 64

#: A file or folder modified this recently (ns) before it was recorded may change again within the same
#: tick of its file system's clock (two seconds on FAT): its content hash or listing is saved too.
RACY_NS = 2_000_000_000

#: A pack whose package holds more entries than this is not recorded file by file (nor cached).
MAX_TREE = 20_000

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


@dataclass
class Report:
    """What ``validate`` prints: counts, problems, warnings and the packs that failed to load."""

    actions: int
    templates: int
    problems: list[Problem]
    warnings: list[Problem]
    load_errors: list[PluginRecord] = field(default_factory=list)

    @classmethod
    def of(cls, catalogue: Catalogue) -> Report:
        """The report of a built catalogue."""
        return cls(len(catalogue.actions), len(catalogue.templates), list(catalogue.problems),
                   list(catalogue.warnings), catalogue.load_errors)

    def all_problems(self, strict: bool = False) -> list[Problem]:
        """The problems, plus (``strict``) one per pack that failed to load (see :meth:`Catalogue.all_problems`)."""
        from cass_actions_core.plugins import pack_load_problems

        return (pack_load_problems(self.load_errors) if strict else []) + self.problems

    def to_dict(self) -> dict[str, Any]:
        """The report as saved (never with load errors: such a report is not saved)."""
        return {"actions": self.actions, "templates": self.templates, "problems": [p.to_dict() for p in self.problems],
                "warnings": [w.to_dict() for w in self.warnings]}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Report:
        """A saved report."""
        return cls(int(doc["actions"]), int(doc["templates"]), [Problem(**p) for p in doc["problems"]],
                   [Problem(**w) for w in doc["warnings"]])


# -- recording what a build reads --------------------------------------------------------

#: Audited operations whose outcome no file records (the network, another program): a build that
#: does one of them is not saved.
_UNRECORDABLE = frozenset({"socket.connect", "socket.getaddrinfo", "socket.sendto", "http.client.connect",
                           "urllib.Request", "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn",
                           "os.spawn"})


class _Recorder:
    """What one catalogue build read: files opened, folders listed, environment variables looked up."""

    def __init__(self) -> None:
        self.opened: list[Any] = []
        self.listed: list[Any] = []
        self.env: dict[str, str | None] = {}
        self.unrecordable: str | None = None  # the first operation that makes the result unsaveable
        self.modules_before = frozenset(sys.modules)
        self.start_ns = time.time_ns()


_recorder: _Recorder | None = None
_hooked = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Runs for every audited operation of the process once installed: cheap, and never raises
    # (an exception here would fail the operation being audited).
    rec = _recorder
    if rec is None:
        return
    try:
        if event == "open":
            path, mode, flags = args
            if isinstance(flags, int) and flags & _WRITE_FLAGS:
                return
            if isinstance(mode, str) and ("w" in mode or "a" in mode or "x" in mode or "+" in mode):
                return
            rec.opened.append(path)
        elif event == "os.listdir" or event == "os.scandir":
            rec.listed.append(args[0])
        elif event == "sqlite3.connect":
            if args[0] not in ("", ":memory:"):
                rec.opened.append(args[0])
        elif event in _UNRECORDABLE and rec.unrecordable is None:
            rec.unrecordable = event
    except Exception:
        pass


_environ_getitem = os._Environ.__getitem__  # type: ignore[attr-defined]


def _recording_getitem(self: Any, key: Any) -> Any:
    rec = _recorder
    try:
        value = _environ_getitem(self, key)
    except KeyError:
        if rec is not None and self is os.environ and isinstance(key, str):
            rec.env.setdefault(key, None)
        raise
    if rec is not None and self is os.environ and isinstance(key, str):
        rec.env.setdefault(key, value)
    return value


@contextmanager
def _recording() -> Iterator[_Recorder]:
    global _recorder, _hooked
    if not _hooked:
        sys.addaudithook(_audit)  # an audit hook cannot be removed: it does nothing outside a recording
        _hooked = True
    rec = _Recorder()
    _recorder = rec
    os._Environ.__getitem__ = _recording_getitem  # type: ignore[attr-defined]
    try:
        yield rec
    finally:
        os._Environ.__getitem__ = _environ_getitem  # type: ignore[attr-defined]
        _recorder = None


# -- the cache ---------------------------------------------------------------------------

class ValidateCache:
    """The saved report for one configuration, set of packs and template files (see the module docs)."""

    def __init__(self, config: Config, template_files: Sequence[str], discovered: Sequence[FoundEntryPoint]) -> None:
        """Key the entry on what is known before loading anything; ``discovered``: the installed entry points."""
        from cass_actions_core import __version__

        self.discovered = list(discovered)
        self.root = cache_root()
        material = {
            "format": FORMAT, "version": __version__, "python": sys.version, "executable": sys.executable,
            "path": sys.path, "cwd": os.getcwd(),
            "env": sorted((k, v) for k, v in os.environ.items() if k.startswith("CASS_ACTIONS_")),
            "config": [str(config.source) if config.source else None, config.to_dict()],
            "template_files": list(template_files),
            "packs": [[f.name, f.entry_point.value, f.entry_point.group, f.distribution, f.version] for f in self.discovered],
        }
        key = hashlib.sha256(json.dumps(material, sort_keys=True, default=repr).encode("utf-8")).hexdigest()
        self.folder = self.root / f"validate-{__version__}"
        self.path = self.folder / f"{key}.json"
        self._recorder: _Recorder | None = None

    # -- reading -----------------------------------------------------------------------
    def load(self) -> Report | None:
        """The saved report if nothing it depends on changed, else ``None``."""
        try:
            entry = json.loads(self.path.read_bytes())
            if entry.get("format") != FORMAT:
                return None
            for name, value in entry["env"]:
                if os.environ.get(name) != value:
                    return None
            for path, size, mtime, digest in entry["files"]:
                if mtime is None:  # read while absent: must still be absent
                    if os.path.lexists(path):
                        return None
                    continue
                st = os.stat(path)
                if st.st_size != size or st.st_mtime_ns != mtime:
                    return None
                if digest is not None and _file_digest(path) != digest:
                    return None
            for path, mtime, names in entry["dirs"]:
                if mtime is None:
                    if os.path.lexists(path):
                        return None
                    continue
                if os.stat(path).st_mtime_ns != mtime:
                    return None
                if names is not None and _listing(path) != names:
                    return None
            report = Report.from_dict(entry["report"])
        except Exception:  # no entry, or an unreadable one, or a recorded file gone: check afresh
            return None
        self._touch(entry)
        return report

    def _touch(self, entry: dict[str, Any]) -> None:
        """Mark the entry used (for :data:`KEEP`), dropping the hashes and listings no longer needed: they
        were just confirmed, and a file or folder last changed long enough ago gets a newer time if it
        changes again."""
        old = time.time_ns() - RACY_NS
        files = [[p, s, m, d if m is not None and m >= old else None] for p, s, m, d in entry["files"]]
        dirs = [[p, m, n if m is not None and m >= old else None] for p, m, n in entry["dirs"]]
        try:
            if files != entry["files"] or dirs != entry["dirs"]:
                self._write({**entry, "files": files, "dirs": dirs})
            else:
                os.utime(self.path)
        except OSError:
            pass

    # -- recording and saving ------------------------------------------------------------
    @contextmanager
    def recording(self) -> Iterator[None]:
        """Record what the catalogue build inside the block reads (for :meth:`save`)."""
        with _recording() as rec:
            self._recorder = rec
            yield

    def save(self, report: Report, catalogue: Catalogue) -> bool:
        """Save ``report`` with what the recorded build read; ``False`` when it must not be saved (see the
        module docs) or cannot be (a read-only folder only costs speed)."""
        rec = self._recorder
        if rec is None or rec.unrecordable or report.load_errors or any(p.code == "handler-import" for p in report.problems):
            return False
        try:
            inputs = _Inputs(rec, self.root)
            if not inputs.add_packs(catalogue, rec.modules_before):
                return False
            inputs.add_modules()
            inputs.add_paths(rec)
            files, dirs = inputs.stamped()
            entry = {"format": FORMAT, "env": sorted([k, v] for k, v in rec.env.items()), "files": files, "dirs": dirs,
                     "report": report.to_dict()}
            self._write(entry)
            self._prune()
        except Exception:  # _Unsure, a read-only or full disk, an odd pack object: saving is only a speed-up
            return False
        return True

    def _write(self, entry: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry), "utf-8")
        tmp.replace(self.path)

    def _prune(self) -> None:
        entries = [p for p in self.folder.iterdir() if p.suffix == ".json"]
        if len(entries) <= KEEP:
            return
        entries.sort(key=lambda p: p.stat().st_mtime_ns)
        for old in entries[:-KEEP]:
            old.unlink(missing_ok=True)


class _Unsure(Exception):
    """Something the build read cannot be confirmed later: do not save."""


class _Inputs:
    """The files and folders a build depended on, to be stamped with their sizes and times."""

    def __init__(self, rec: _Recorder, cache_folder: Path) -> None:
        self.rec = rec
        self.files: set[str] = set()
        self.dirs: set[str] = set()
        self.skip = [_absolute(cache_folder)]
        self.stdlib = os.path.dirname(os.__file__)

    def _ignored(self, path: str) -> bool:
        parts = path.split(os.sep)
        if "__pycache__" in parts or path.endswith((".pyc", ".pyo")):
            return True
        if any(p.endswith((".dist-info", ".egg-info")) for p in parts):
            return True  # distributions' metadata: what matters of it (entry points, versions) is in the key
        if path.startswith(self.stdlib + os.sep) and "site-packages" not in parts and "dist-packages" not in parts:
            return True  # the standard library changes only with the interpreter, which is in the key
        return any(path == s or path.startswith(s + os.sep) for s in self.skip)

    def file(self, path: Any) -> None:
        if isinstance(path, (str, bytes, os.PathLike)):
            text = _absolute(path)
            if not self._ignored(text):
                self.files.add(text)

    def dir(self, path: Any) -> None:
        if isinstance(path, (str, bytes, os.PathLike)):
            text = _absolute(path)
            if not self._ignored(text):
                self.dirs.add(text)

    def add_paths(self, rec: _Recorder) -> None:
        for path in rec.opened:
            self.file(path)
        for path in rec.listed:
            self.dir(path)
        for entry in sys.path:
            self.dir(entry or os.curdir)

    def add_modules(self) -> None:
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str):
                self.file(path)
            elif path is None and getattr(module, "__path__", None) is not None:  # a namespace package
                try:
                    folders = list(module.__path__)
                except Exception:
                    raise _Unsure(f"cannot list the folders of {module.__name__}") from None
                for folder in folders:
                    self.dir(folder)

    def add_packs(self, catalogue: Catalogue, modules_before: frozenset[str]) -> bool:
        """Every file and folder of each loaded pack's top-level package (or its module and the module's
        folder); ``False`` if a pack's module cannot be found or was imported before the recording."""
        pm = catalogue.plugin_manager
        for record in catalogue.plugins:
            if record.status != "loaded":
                continue
            plugin = pm.get_plugin(record.name)
            module = plugin if isinstance(plugin, ModuleType) else sys.modules.get(
                getattr(plugin, "__module__", None) or type(plugin).__module__)
            if module is None:
                return False
            top = module.__name__.partition(".")[0]
            if not record.builtin and any(m == top or m.startswith(top + ".") for m in modules_before):
                return False
            package = sys.modules.get(top)
            folders = getattr(package, "__path__", None)
            if folders:
                for folder in folders:
                    self._tree(folder)
            else:
                path = getattr(package, "__file__", None)
                if not isinstance(path, str):
                    return False
                self.file(path)
                self.dir(os.path.dirname(path) or os.curdir)
        return True

    def _tree(self, top: str) -> None:
        count = 0
        for folder, subfolders, names in os.walk(top, followlinks=True):  # (the cap below ends any loop)
            subfolders[:] = [d for d in subfolders if d != "__pycache__"]
            self.dir(folder)
            for name in names:
                self.file(os.path.join(folder, name))
            count += len(names) + 1
            if count > MAX_TREE:
                raise _Unsure(f"{top} is too large to record")

    def stamped(self) -> tuple[list[list[Any]], list[list[Any]]]:
        """``[path, size, mtime_ns, sha256 or None]`` per file and ``[path, mtime_ns, listing or None]`` per
        folder (``None`` times: absent); :class:`_Unsure` when a file changed during the build."""
        start, now = self.rec.start_ns, time.time_ns()
        files = []
        for path in sorted(self.files - self.dirs):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                files.append([path, None, None, None])  # looked for and not found: it must not appear
                continue
            if not stat.S_ISREG(st.st_mode):
                continue  # a device or a pipe: nothing to compare
            if st.st_mtime_ns >= start:
                raise _Unsure(f"{path} changed while the catalogue was checked")
            racy = st.st_mtime_ns >= start - RACY_NS or st.st_mtime_ns > now
            files.append([path, st.st_size, st.st_mtime_ns, _file_digest(path) if racy else None])
        dirs = []
        for path in sorted(self.dirs):
            try:
                st = os.stat(path)
            except FileNotFoundError:
                dirs.append([path, None, None])  # a path entry that does not exist: it must not appear
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            # A folder changed during the build (a __pycache__ made in it) or just before: keep its listing.
            racy = st.st_mtime_ns >= start - RACY_NS
            dirs.append([path, st.st_mtime_ns, _listing(path) if racy else None])
        return files, dirs


def _absolute(path: Any) -> str:
    text = os.fsdecode(os.fspath(path))
    return os.path.abspath(text)


def _file_digest(path: str) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _listing(path: str) -> list[str]:
    return sorted(name for name in os.listdir(path) if name != "__pycache__")
