"""A class's submissions as the grader reads them: one entry per student in SUBMISSIONS, a folder or
a `.zip` of week modules (a single folder wrapping them, as zips often have, is fine), found, named
and staged for grading. A week may come as its module (`week2_neural_networks.py`) or as a notebook
of the same name (`week2_neural_networks.ipynb`, whose code cells are graded: grader.notebook_source);
where both came, the module is graded and a problem says so.

Files are read with size limits and never unpacked to disk under names chosen by the student: only
the expected week modules are read out, as bytes. A malformed submission (no week module, wrong file
names, files that do not compile, a zip that is corrupt or unpacks to too much, symbolic links,
files that are not week modules) is staged with what is wrong, never raised.
"""

import ast
import collections
import dataclasses
import io
import re
import stat
import zipfile
from pathlib import Path

from grader import grading, intake, notebook_source, report

MAX_MODULE_BYTES = intake.MAX_MODULE_BYTES  # one week module
MAX_BYTES = {".py": MAX_MODULE_BYTES, ".ipynb": notebook_source.MAX_NOTEBOOK_BYTES}  # a week's file, by kind
WEEK_FILES = {f"{name}{suffix}" for name in grading.WEEKS.values() for suffix in MAX_BYTES}
MAX_ZIP_BYTES = 64 * 2**20  # a submitted zip file
MAX_UNPACKED_BYTES = 32 * 2**20  # everything a zip holds, unpacked
MAX_ENTRIES = 2000  # files in a zip or a submission folder
NAMES_SHOWN = 5
NAME_CHARACTERS_SHOWN = 60
MESSAGE_CHARACTERS_SHOWN = 300
BATCH_FILES = {"gradebook.csv", "summary.md", "summary.json", "summary.png", "failure.txt", "canvas.csv",
               "similarity.html", "similarity.csv"}  # a batch's own files in DIR: never a submission's folder name
IGNORED_NAMES = {"__init__.py", "__pycache__", "__MACOSX", ".DS_Store", "Thumbs.db", "submission_metadata.json"}
LOOKS_LIKE_A_WEEK = re.compile(r"week[ _-]?(\d)", re.IGNORECASE)


@dataclasses.dataclass
class Submission:
    """One entry of SUBMISSIONS: its name in the gradebook, its path, its folder in DIR, and why it cannot
    be graded whatever it holds (`fatal`, say another entry has the same name)."""

    name: str
    path: Path
    folder: str
    fatal: str = ""


@dataclasses.dataclass
class Staged:
    """What a submission gives the grader: week modules by file name, the problems found, or why
    nothing can be graded (`fatal`)."""

    modules: dict[str, bytes]
    problems: list[str]
    fatal: str = ""


class Malformed(ValueError):
    """The submission cannot be graded at all; the message says why."""


# ---------------------------------------------------------------------------------------------
# Finding and reading submissions


def safe_folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:100] or "submission"


def find_submissions(root: Path) -> list[Submission]:
    """Every visible entry of `root`, sorted by name, each with a gradebook name (`gradebook_names`) and an
    output folder name distinct from the others' and from the batch's own files. Entries with the same name
    (`alice/` and `Alice.zip`) are ambiguous: each gets a `fatal` reason naming the others."""
    if not root.is_dir():
        raise ValueError(f"SUBMISSIONS must be a folder holding one folder or .zip per student; {root} is not a folder")
    try:
        paths = [path for path in sorted(root.iterdir(), key=lambda entry: entry.name)
                 if not path.name.startswith(".") and path.name not in IGNORED_NAMES]
    except OSError as error:
        raise ValueError(f"cannot list the submissions in {root}: {error}") from error
    names = gradebook_names(paths)
    namesakes = collections.defaultdict(list)
    for path in paths:
        namesakes[_raw_name(path).lower()].append(path)
    found, used = [], set(BATCH_FILES)
    for path, name in names.items():
        folder = safe_folder_name(name)
        while folder.lower() in used:
            folder += "_"
        used.add(folder.lower())
        others = [_entry_name(other) for other in namesakes[_raw_name(path).lower()] if other != path]
        fatal = (f"{_entry_name(path)} collides with {' and '.join(others)}: both are the submission "
                 f"'{submission_name(path)}' (names are compared ignoring case); keep only one") if others else ""
        found.append(Submission(name, path, folder, fatal))
    return found


def gradebook_names(paths: list[Path]) -> dict[Path, str]:
    """{entry: its name in the gradebook}, no two alike. The name is `submission_name`; where several entries
    would show the same text (`alice/` and `alice.zip`, or `a\\x01` and a name holding the control character
    \\x01, which both show as `a\\x01`) the first keeps it and the others get " (2)", " (3)", ...: first an entry
    whose name is shown as it is, then the others in the order of their raw names. A suffixed name is never
    another entry's own name."""
    shown = {path: submission_name(path) for path in paths}
    taken = set(shown.values())
    names, seen = {}, set()
    first_the_names_shown_as_they_are = sorted(paths, key=lambda path: (shown[path] != _raw_name(path), path.name))
    for path in first_the_names_shown_as_they_are:
        name = shown[path]
        if name in seen:
            number = 2
            while f"{name} ({number})" in taken:
                number += 1
            name = f"{name} ({number})"
            taken.add(name)
        seen.add(name)
        names[path] = name
    return {path: names[path] for path in paths}


def submission_name(path: Path) -> str:
    """The name an entry is shown with: its name without `.zip`, unprintable characters escaped
    (`report.printable`), so that no name can break a line of the gradebook or the summary."""
    return report.printable(_raw_name(path))


def _raw_name(path: Path) -> str:
    """The entry's own name without `.zip`: what tells two students apart."""
    return path.name[:-4] if path.name.lower().endswith(".zip") and path.is_file() else path.name


def _entry_name(path: Path) -> str:
    return report.printable(path.name) + ("/" if path.is_dir() else "")


def _listing_of_folder(folder: intake.Folder) -> dict[tuple[str, ...], tuple[str, int, object]]:
    """{relative path parts: (kind, size, how to read)} for the files of a submission folder, three
    folders deep at most; nothing is followed (see `grader.intake`)."""
    try:
        listing = folder.listing(max_depth=3, max_entries=MAX_ENTRIES)
    except intake.Refused as error:
        raise Malformed(str(error)) from None
    return {parts: (kind, size, parts) for parts, (kind, size) in listing.items()}


def _listing_of_zip(archive: zipfile.ZipFile, size: int) -> dict[tuple[str, ...], tuple[str, int, object]]:
    """{path parts: (kind, size, ZipInfo)} for the entries of a zip; raises Malformed when a file is in it twice."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise Malformed(f"the zip holds {len(infos)} entries, more than {MAX_ENTRIES}")
    unpacked = sum(info.file_size for info in infos)
    if unpacked > MAX_UNPACKED_BYTES:
        raise Malformed(f"the zip would unpack to {unpacked / 2**20:,.0f} MiB from {size / 2**20:,.1f} MiB, more than "
                        f"the limit of {MAX_UNPACKED_BYTES / 2**20:.0f} MiB (a zip bomb?)")
    entries = {}
    for info in infos:
        parts = tuple(part for part in info.filename.replace("\\", "/").split("/") if part not in ("", "."))
        if not parts or ".." in parts or info.filename.startswith("/"):
            entries[("unsafe path " + info.filename[:60],)] = ("special", 0, None)
            continue
        mode = info.external_attr >> 16
        if info.is_dir():
            kind = "folder"
        elif stat.S_ISLNK(mode):
            kind = "link"
        else:
            kind = "file"
        for depth in range(1, len(parts)):
            entries.setdefault(parts[:depth], ("folder", 0, None))
        if kind != "folder" and parts in entries and entries[parts][0] != "folder":
            raise Malformed(f"the zip holds {shown_name('/'.join(parts))} twice: which one to grade is ambiguous")
        entries[parts] = (kind, info.file_size, info)
    return entries


def _root(entries: dict) -> tuple[str, ...]:
    """The folder holding the week modules: the one folder deeper down that holds week modules when
    the top holds none (say, a zip of the whole course), else the top, or the one folder that wraps
    everything."""
    holders = {parts[:-1] for parts, (kind, _, _) in entries.items() if parts[-1] in WEEK_FILES and kind == "file"}
    if len(holders) == 1 and () not in holders:
        return holders.pop()
    return _wrapper(entries)


def _wrapper(entries: dict) -> tuple[str, ...]:
    """The top folder, or the one folder that wraps everything (as zips often have)."""
    root = ()
    for _ in range(3):
        children = {parts[len(root)]: entries[parts] for parts in entries
                    if len(parts) == len(root) + 1 and parts[:len(root)] == root
                    and parts[-1] not in IGNORED_NAMES and not parts[-1].startswith(".")}
        folders = [name for name, (kind, _, _) in children.items() if kind == "folder"]
        if len(children) == 1 and folders:
            root = (*root, folders[0])
        else:
            break
    return root


def _read(parts: tuple[str, ...], kind_size_source, archive: zipfile.ZipFile | intake.Folder, limit: int) -> bytes:
    """The bytes of one regular file, at most `limit` of them whatever its header says; raises
    intake.Refused, naming it, for anything else. From a folder the file is opened without
    following links and checked once open, so it cannot be swapped for a link after the listing."""
    kind, _, source = kind_size_source
    shown = "/".join(parts)
    if isinstance(archive, intake.Folder):
        return archive.read(source, limit)
    if kind != "file":
        raise intake.Refused(f"{shown} is {'a symbolic link' if kind == 'link' else 'a ' + kind}: not graded")
    with archive.open(source) as file:
        content = file.read(limit + 1)
    if len(content) > limit:
        raise intake.Refused(f"{shown} is larger than {limit // 2**20} MiB: not graded")
    return content


def stage(submission: Submission, weeks: list[int]) -> Staged:
    """Reads a submission's week modules for `weeks`. Never raises: whatever is wrong (a corrupt or truncated
    zip, odd names, ...) is in the result, as printable one-line problems or as the reason it is `fatal`."""
    if submission.fatal:
        return Staged({}, [], submission.fatal)
    try:
        staged = _stage(submission, weeks)
    except Malformed as error:
        staged = Staged({}, [], str(error))
    except Exception as error:  # noqa: BLE001 - an unreadable submission costs its own row, never the batch
        staged = Staged({}, [], _unreadable(submission, error))
    return Staged(staged.modules, [report.printable(problem) for problem in staged.problems],
                  report.printable(staged.fatal))


def _unreadable(submission: Submission, error: Exception) -> str:
    """Why reading a submission failed, e.g. "not a readable zip file (zlib.error: Error -3 ...)"."""
    kind = type(error).__name__
    if type(error).__module__ != "builtins":
        kind = f"{type(error).__module__.lstrip('_')}.{kind}"  # zlib.error, lzma.LZMAError, zipfile.BadZipFile
    is_zip = submission.path.name.lower().endswith(".zip") and not submission.path.is_dir()
    message = str(error)[:MESSAGE_CHARACTERS_SHOWN]
    return f"{'not a readable zip file' if is_zip else 'could not be read'} ({kind}: {message})"


def _stage(submission: Submission, weeks: list[int]) -> Staged:
    """A folder is read through its directory descriptor, a zip from its bytes, read once; an entry
    that is a symbolic link (to a classmate's folder, say) is not followed but refused."""
    path = submission.path
    kind = intake.entry_kind(path)
    try:
        if kind == "a folder":
            with intake.Folder(path, follow_root=False) as folder:
                return _select(_listing_of_folder(folder), folder, weeks)
        if kind and path.name.lower().endswith(".zip"):  # a link, a FIFO, a device: refused, naming it
            data = intake.read_file(path.parent, path.name, MAX_ZIP_BYTES)
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                return _select(_listing_of_zip(archive, len(data)), archive, weeks)
    except intake.Refused as error:
        raise Malformed(str(error)) from None
    if kind == "a symbolic link":
        raise Malformed(f"{path.name} is a symbolic link: not graded")
    raise Malformed(f"{path.name} is neither a folder nor a .zip file")


def _select(entries: dict, archive, weeks: list[int]) -> Staged:
    root = _root(entries)
    expected = {f"{grading.WEEKS[week]}{suffix}": week for week in weeks for suffix in MAX_BYTES}
    modules, problems, unexpected = {}, [], []
    for parts, entry in sorted(entries.items()):
        kind, size, _ = entry
        name = parts[-1]
        if parts[:-1] != root or name.startswith(".") or name in IGNORED_NAMES:
            continue  # files in sub-folders are not graded: the sub-folder is reported as unexpected
        if name in expected:
            limit = MAX_BYTES[Path(name).suffix]
            if kind == "file" and size > limit:
                problems.append(f"{name} is {size / 2**20:,.1f} MiB, more than {limit // 2**20} MiB: not graded")
            else:
                try:
                    modules[name] = _read(parts, entry, archive, limit)
                except intake.Refused as error:
                    problems.append(str(error))
        elif name in WEEK_FILES:
            continue  # a week not graded in this run
        elif (Path(name.lower()).suffix in MAX_BYTES and (match := LOOKS_LIKE_A_WEEK.search(name))
              and int(match[1]) in grading.WEEKS):
            right = f"{grading.WEEKS[int(match[1])]}{Path(name.lower()).suffix}"
            problems.append(f"wrong file name {shown_name(name)!r}: week {match[1]} must be in {right}; not graded")
        else:
            unexpected.append(shown_name(name) + ("/" if kind == "folder" else ""))
    for week in weeks:
        module, notebook = (f"{grading.WEEKS[week]}{suffix}" for suffix in MAX_BYTES)
        if module in modules and notebook in modules:
            del modules[notebook]
            problems.append(f"both {module} and {notebook} were submitted: {module} was graded")
        elif not {module, notebook} & set(modules) and not any(module in problem or notebook in problem
                                                               for problem in problems):
            problems.append(f"missing {module}: week {week} scores 0")
    for name, content in modules.items():
        if problem := compile_problem(name, content):
            problems.append(problem)
    if unexpected:
        shown = ", ".join(unexpected[:NAMES_SHOWN]) + (f" and {len(unexpected) - NAMES_SHOWN} more"
                                                         if len(unexpected) > NAMES_SHOWN else "")
        problems.append(f"ignored files that are not week modules: {shown}")
    if root != _wrapper(entries) and modules:
        problems.insert(0, f"graded the week modules found in {'/'.join(root)}/")
    if not modules:
        where = "/".join(root) + "/" if root else "the top level"
        problems = [problem for problem in problems if not problem.startswith("missing ")]
        raise Malformed(f"no week module to grade in {where} (expected {', '.join(name for name in expected if name.endswith('.py'))}, "
                        "or the notebooks of the same names)"
                        + (f"; {'; '.join(problems)}" if problems else ""))
    return Staged(modules, problems)


def shown_name(name: str) -> str:
    """A file name as problems show it: at most NAME_CHARACTERS_SHOWN characters."""
    return name if len(name) <= NAME_CHARACTERS_SHOWN else name[:NAME_CHARACTERS_SHOWN - 3] + "..."


def compile_problem(name: str, content: bytes) -> str:
    """"" when the module (or the notebook's code cells) parses (nothing of it runs here), else a
    one-line reason."""
    if name.endswith(".ipynb"):
        try:
            notebook_source.program(content, name, name.removesuffix(".ipynb") + ".py")
        except notebook_source.NotebookError as error:
            return f"{error}; its week scores 0"
        return ""
    try:
        ast.parse(content, name)
    except SyntaxError as error:
        return f"{name} does not compile: {error.msg} (line {error.lineno}); its week scores 0"
    except (ValueError, RecursionError, MemoryError) as error:
        return f"{name} does not compile: {type(error).__name__}: {error}; its week scores 0"
    return ""
