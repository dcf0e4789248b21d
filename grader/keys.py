"""Key discipline, read from the traced program: does a function use any PRNG key twice?

JAX's draws from one key look independent to any test of their outputs, so a reused key cannot be
seen in what a function returns; it shows in the program it traces (`jax.make_jaxpr`). That program
is traced inside the graded process, which can change what it traces, so what this finds is advice,
never scored (`grader.checks`: self-reported).
"""

import jax

KEY_CONSUMERS = ("random_bits", "random_split")  # a key drawn from, or split, is used up
KEY_VIEWS = ("squeeze", "reshape", "expand_dims", "convert_element_type", "copy", "copy_p", "random_wrap",
             "random_unwrap")  # the same keys, seen otherwise


def keys_used_twice(function, *args) -> list[str]:
    """Where `function(*args)`, traced (`jax.make_jaxpr`), uses one PRNG key twice: a key drawn from
    or split more than once, or split and drawn from, including inside the jitted, vmapped or
    branched code it calls. Keys made with `jax.random.fold_in` from one key are distinct keys.

    Returns one line per reuse, e.g. "one key is used twice: by random_split (in _randint) and by
    random_bits (in _uniform)"; [] when every key is used once. Traced inside the graded process: the graded code
    can hide a reuse from it, never invent one, so its findings are advice (self-reported)."""
    closed = jax.make_jaxpr(function)(*args)
    roots = iter(range(1, 1 << 62))
    identity = {var: ((next(roots),), ()) for var in closed.jaxpr.invars}
    uses: list[tuple[tuple, str]] = []
    _walk_keys(closed.jaxpr, identity, uses, roots, "")
    found = []
    for first in range(len(uses)):
        for second in range(first + 1, len(uses)):
            (root_a, path_a), where_a = uses[first]
            (root_b, path_b), where_b = uses[second]
            if root_a == root_b and (path_a[:len(path_b)] == path_b or path_b[:len(path_a)] == path_a):
                found.append(f"one key is used twice: by {where_a} and by {where_b}")
    return list(dict.fromkeys(found))


def _is_key(var) -> bool:
    dtype = getattr(getattr(var, "aval", None), "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _sub_jaxprs(equation) -> list:
    """The jaxprs an equation runs with the equation's own operands (jit, custom rules, remat)."""
    found = []
    for name in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        inner = equation.params.get(name)
        if inner is not None:
            found.append(getattr(inner, "jaxpr", inner))
    return found


def _walk_keys(jaxpr, identity: dict, uses: list, roots, context: str, splits: dict | None = None) -> None:
    """Follows the keys of `jaxpr` (identity: var -> (root, path of static slices)), appending a
    (key identity, consumer) to `uses` for every key drawn from or split (`splits`: the keys each
    split made, by the key and shape split)."""
    splits = {} if splits is None else splits
    for equation in jaxpr.eqns:
        name = equation.primitive.name
        operands = [identity.get(var) if type(var).__name__ != "Literal" else None
                    for var in equation.invars]
        where = f"{name}" + (f" (in {context})" if context else "")
        if name == "random_split" and operands and operands[0] is not None:
            # splitting is deterministic: the same key split again gives the same keys, which
            # count as used where they are used (a, b = split(k) equals split(k)[0], split(k)[1])
            made = (operands[0], tuple(equation.params.get("shape", ())))
            if made in splits:
                identity[equation.outvars[0]] = splits[made]
                continue
            uses.append((operands[0], where))
            splits[made] = identity[equation.outvars[0]] = ((next(roots),), ())
            continue
        if name in KEY_CONSUMERS and operands and operands[0] is not None:
            uses.append((operands[0], where))
        if name in KEY_VIEWS and operands and operands[0] is not None:
            identity[equation.outvars[0]] = operands[0]
            continue
        if name == "slice" and operands and operands[0] is not None:
            root, path = operands[0]
            step = (tuple(equation.params["start_indices"]), tuple(equation.params["limit_indices"]),
                    tuple(equation.params["strides"] or ()))
            identity[equation.outvars[0]] = (root, path + (step,))
            continue
        inner_jaxprs = _sub_jaxprs(equation)
        if name == "cond":  # one branch runs: a key used once in each branch is used once
            branch_uses = []
            for branch in equation.params["branches"]:
                found: list = []
                inner = dict(zip(branch.jaxpr.invars, operands[1:]))
                _walk_keys(branch.jaxpr, {var: value for var, value in inner.items() if value is not None},
                           found, roots, branch_context(context, name), dict(splits))
                branch_uses.append(found)
            uses.extend(max(branch_uses, key=len, default=[]))
        elif name in ("while", "scan") or inner_jaxprs:
            for inner_jaxpr in inner_jaxprs or [getattr(equation.params.get("body_jaxpr"), "jaxpr", None)]:
                if inner_jaxpr is None or len(inner_jaxpr.invars) != len(operands):
                    continue
                inner = {var: value for var, value in zip(inner_jaxpr.invars, operands) if value is not None}
                _walk_keys(inner_jaxpr, inner, uses, roots,
                           equation.params.get("name", "") or branch_context(context, name), splits)
                for outer, inner_out in zip(equation.outvars, inner_jaxpr.outvars):
                    if _is_key(outer) and inner_out in inner:
                        identity[outer] = inner[inner_out]
        for var in equation.outvars:  # a key the equation makes (a split's keys): new keys
            if _is_key(var) and var not in identity:
                identity[var] = ((next(roots),), ())


def branch_context(context: str, name: str) -> str:
    return f"{context}/{name}" if context else name
