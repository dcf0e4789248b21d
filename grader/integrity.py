"""Flags for the instructor: submitted code that reaches for the grader's or JAX's internals.

The graded code runs in the same process as the probes that measure it, so it can rewrite what they
report: patch `jax.jit`, the grader's counters or `jax.Array.sharding`, find the grader's objects
through `sys.modules`, the call stack's frames or the garbage collector. The properties only that
process can observe are therefore not scored (`grader.judges.self_reported`), and the points do not
depend on what is flagged here. This module reads the submitted source, in the grading process,
without running it, and says where it does such things, one line each:

    integrity: the code patches jax.jit at line 12 of week2_neural_networks.py

A flag is for a person to review, not a penalty: it is a static scan, which code built at run time
(`exec`, `getattr` with a computed name) escapes, and which is why those are flagged too. Honest
course code (the solutions, the exercises, the usual alternatives) raises none.
"""

import ast
import threading
import time

MAX_SOURCE_BYTES = 1 * 2**20  # a week module (grader.intake refuses larger ones)
MAX_FLAGS = 20  # more are summed up in one line

# Whose attributes the graded code must not rebind: the libraries the probes call, and the grader.
PROTECTED_ROOTS = {"jax", "jaxlib", "flax", "optax", "numpy", "grader", "course", "builtins"}
# module attribute -> what reaching for it does
REACHING = {
    "sys.modules": "reads sys.modules",
    "sys._getframe": "reaches for the call stack's frames (sys._getframe)",
    "sys._current_frames": "reaches for the call stack's frames (sys._current_frames)",
    "sys.settrace": "traces other code's execution (sys.settrace)",
    "sys.setprofile": "traces other code's execution (sys.setprofile)",
    "inspect.currentframe": "reaches for the call stack's frames (inspect.currentframe)",
    "inspect.stack": "reaches for the call stack's frames (inspect.stack)",
    "inspect.trace": "reaches for the call stack's frames (inspect.trace)",
    "inspect.getouterframes": "reaches for the call stack's frames (inspect.getouterframes)",
    "inspect.getinnerframes": "reaches for the call stack's frames (inspect.getinnerframes)",
    "gc.get_objects": "searches the garbage collector's objects (gc.get_objects)",
    "gc.get_referrers": "searches the garbage collector's objects (gc.get_referrers)",
    "gc.get_referents": "searches the garbage collector's objects (gc.get_referents)",
    "jax.disable_jit": "switches jit off (jax.disable_jit)",
    "builtins.__import__": "imports modules by name at run time (__import__)",
    "builtins.exec": "runs code built at run time (exec)",
    "builtins.eval": "runs code built at run time (eval)",
    "builtins.compile": "runs code built at run time (compile)",
}
# attribute names, on any object -> what using them does
ATTRIBUTES = {
    **{name: f"reaches for a frame's {name}" for name in ("f_back", "f_globals", "f_locals", "f_builtins")},
    **{name: f"reaches for the frame of a traceback or generator ({name})"
       for name in ("tb_frame", "gi_frame", "cr_frame", "ag_frame")},
    "__subclasses__": "lists a class's subclasses (__subclasses__)",
    "__globals__": "reaches for a function's module globals (__globals__)",
    "__code__": "reaches for a function's code object (__code__)",
    "__closure__": "reaches for a function's closure (__closure__)",
    "__builtins__": "reaches for __builtins__",
}
# attributes that say where a JAX array is: setting them fakes the placement the grader reads
PLACEMENT_ATTRIBUTES = {"sharding", "addressable_shards", "device_set", "is_fully_replicated", "devices",
                        "committed", "_committed"}
IMPORTS = {
    "ctypes": "imports ctypes", "_ctypes": "imports ctypes", "cffi": "imports cffi",
    "importlib": "imports modules by name at run time (importlib)", "grader": "imports the grader",
}
RUN_TIME_CODE = {"exec": "runs code built at run time (exec)", "eval": "runs code built at run time (eval)",
                 "compile": "runs code built at run time (compile)",
                 "__import__": "imports modules by name at run time (__import__)"}


PARSING = threading.Lock()

def parse(source: bytes, filename: str, attempts: int = 5) -> ast.Module | None:
    """`ast.parse`, tried again where CPython 3.11 fails it with "AST constructor recursion depth
    mismatch": that state is shared by every thread of the process, so an AST built in another
    thread at the same moment trips it (seen once in a grading beside another; the other thread
    was not identified). None where every attempt failed."""
    for attempt in range(attempts):
        try:
            with PARSING:
                return ast.parse(source, filename=filename)
        except SystemError:
            time.sleep(0.05 * (attempt + 1))
    return None


def scan(source: bytes, filename: str) -> list[str]:
    """One line per place where `source` (a week module named `filename`) reaches for the grader's
    or JAX's internals, in line order: "integrity: the code patches jax.jit at line 12 of <filename>".
    Never raises: a source that cannot be parsed cannot be imported either (no flag), and one too large
    or too deeply nested to scan gets a line asking for a look by hand."""
    if len(source) > MAX_SOURCE_BYTES:
        return [f"integrity: {filename} is larger than {MAX_SOURCE_BYTES // 2**20} MiB and was not scanned"]
    try:
        tree = parse(source, filename)
        if tree is None:
            return [f"integrity: {filename} could not be scanned (Python's parser failed): review it by hand"]
        found = _Scan(tree).findings
    except (SyntaxError, ValueError):  # the child's import fails the same way: nothing of it runs
        return []
    except (RecursionError, MemoryError):
        return [f"integrity: {filename} is nested too deeply to be scanned: review it by hand"]
    lines = [f"integrity: the code {what} at line {line} of {filename}" for line, what in sorted(set(found))]
    if len(lines) > MAX_FLAGS:
        lines = lines[:MAX_FLAGS] + [f"integrity: and {len(lines) - MAX_FLAGS} more places in {filename}"]
    return lines


class _Scan:
    """The findings (line, what) of one module's syntax tree, walked without recursion."""

    def __init__(self, tree: ast.AST):
        self.findings: list[tuple[int, str]] = []
        nodes = list(ast.walk(tree))
        self.aliases = self._aliases(nodes)
        self.bound = {name for node in nodes for name in _bound_names(node)}
        for node in nodes:
            self._inspect(node)

    def flag(self, node: ast.AST, what: str) -> None:
        self.findings.append((getattr(node, "lineno", 0), what))

    @staticmethod
    def _aliases(nodes: list[ast.AST]) -> dict[str, str]:
        """{local name: the dotted module path it stands for}, from every import and from plain
        `name = module.attribute` assignments (scopes are not told apart: a scan, not a compiler)."""
        aliases = {"__builtins__": "builtins"}
        for node in nodes:
            if isinstance(node, ast.Import):
                for name in node.names:
                    if name.asname:
                        aliases[name.asname] = name.name
                    else:
                        root = name.name.split(".")[0]
                        aliases[root] = root
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for name in node.names:
                    aliases[name.asname or name.name] = f"{node.module}.{name.name}"
        for _ in range(2):  # `m = jax` then `n = m.numpy`
            for node in nodes:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    dotted = _dotted(node.value, aliases)
                    if dotted is not None:
                        aliases[node.targets[0].id] = dotted
        return aliases

    def _inspect(self, node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for name in node.names:
                self._imported(node, name.name)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            self._imported(node, node.module)
            for name in node.names:
                self._reached(node, f"{node.module}.{name.name}")
        elif isinstance(node, ast.Attribute):
            self._attribute(node)
        elif isinstance(node, ast.Name):
            if node.id in ("__builtins__", "__import__") or (
                    node.id in RUN_TIME_CODE and node.id not in self.bound and isinstance(node.ctx, ast.Load)):
                self.flag(node, RUN_TIME_CODE.get(node.id, "reaches for __builtins__"))
        elif isinstance(node, ast.Call):
            self._call(node)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Attribute) \
                        and target.value.attr == "__dict__":
                    self._rebinds(target, target.value.value, "__dict__[...]")

    def _imported(self, node: ast.AST, module: str) -> None:
        parts = module.split(".")
        if parts[0] in IMPORTS:
            self.flag(node, IMPORTS[parts[0]] + (f" ({module})" if parts[0] == "grader" and len(parts) > 1 else ""))
        elif parts[0] in ("jax", "jaxlib", "flax") and any(part.startswith("_") for part in parts[1:]):
            self.flag(node, f"imports {module} (the library's internals)")

    def _reached(self, node: ast.AST, dotted: str) -> None:
        if dotted in REACHING:
            self.flag(node, REACHING[dotted])

    def _attribute(self, node: ast.Attribute) -> None:
        if node.attr in ATTRIBUTES:
            self.flag(node, ATTRIBUTES[node.attr])
        dotted = _dotted(node, self.aliases)
        if dotted is not None:
            self._reached(node, dotted)
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self._rebinds(node, node.value, node.attr)

    def _rebinds(self, node: ast.AST, owner: ast.AST, attribute: str) -> None:
        """`owner.attribute` is assigned or deleted (or set with setattr/delattr)."""
        dotted = _dotted(owner, self.aliases)
        if dotted is not None and dotted.split(".")[0] in PROTECTED_ROOTS:
            self.flag(node, f"patches {dotted}.{attribute}")
        elif attribute in PLACEMENT_ATTRIBUTES:
            self.flag(node, f"overrides .{attribute} (where JAX says an array is)")

    def _call(self, node: ast.Call) -> None:
        function = node.func
        if isinstance(function, ast.Name) and function.id in ("setattr", "delattr") and len(node.args) >= 2:
            name = node.args[1]
            attribute = name.value if isinstance(name, ast.Constant) and isinstance(name.value, str) else "<a name>"
            self._rebinds(node, node.args[0], attribute)
            if attribute in ATTRIBUTES:
                self.flag(node, ATTRIBUTES[attribute])
        elif isinstance(function, ast.Name) and function.id in ("getattr", "hasattr") and len(node.args) >= 2:
            name = node.args[1]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                if name.value in ATTRIBUTES:
                    self.flag(node, ATTRIBUTES[name.value])
                owner = _dotted(node.args[0], self.aliases)
                if owner is not None:
                    self._reached(node, f"{owner}.{name.value}")
        elif isinstance(function, ast.Name) and function.id == "vars" and node.args:
            owner = _dotted(node.args[0], self.aliases)
            if owner is not None and owner.split(".")[0] in PROTECTED_ROOTS:
                self.flag(node, f"reaches for the namespace of {owner} (vars)")
        elif isinstance(function, ast.Attribute) and function.attr == "update" and node.args:
            dotted = _dotted(function.value, self.aliases)  # jax.config.update("jax_disable_jit", True)
            first = node.args[0]
            if dotted == "jax.config" and isinstance(first, ast.Constant) and first.value == "jax_disable_jit":
                self.flag(node, "switches jit off (jax_disable_jit)")


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """"jax.Array.sharding" for the expression `jax.Array.sharding` (through the import aliases), or
    None when it does not start at an imported name."""
    attributes = []
    while isinstance(node, ast.Attribute):
        attributes.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    return ".".join([aliases[node.id], *reversed(attributes)])


def _bound_names(node: ast.AST) -> list[str]:
    """Names that `node` binds in its scope (a parameter, an assignment, a definition): a local
    variable called `eval` is not the built-in."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
        return [node.id]
    if isinstance(node, ast.arg):
        return [node.arg]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    return []
