"""Every hot-store operation is declared once (``stores/hot_ops.py``) and exists twice: in Redis, as
a Lua script or, for the two pure reads every request makes (``guard``, ``load``), as plain commands
in one MULTI/EXEC (``stores/redis.py`` ``READS``); and as its twin in the memory store. This checks
the pairing itself, so that a script, read, twin or declaration added or removed on one side only
fails here, by name, rather than as a KeyError in some flow; and that the declaration is the only
place that knows positions: no script indexes KEYS or ARGV, the generated header binds each field
where ``OpSpec.flat`` sends it. (That each pair answers alike: ``test_conformance.py``.)"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import NamedTuple

import pytest

import banata_middleware.stores as stores_pkg
from banata_middleware.stores.hot_ops import OPS, OPS_BY_NAME, Head, Key, OpSpec, Rest, hot_op, lua_header
from banata_middleware.stores.memory import MemoryStore
from banata_middleware.stores.redis import READS

LUA = Path(stores_pkg.__file__).parent / "lua"
PRELUDE = LUA / "_prelude.lua"
LUA_RESERVED = {"and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if", "in", "local", "nil",
                "not", "or", "repeat", "return", "then", "true", "until", "while"}
# The globals the scripts call: a field by one of these names would hide it.
LUA_GLOBALS = {"redis", "tonumber", "tostring", "string", "table", "math", "ipairs", "pairs", "unpack", "select",
               "type", "next", "KEYS", "ARGV", "cjson", "bit", "struct", "cmsgpack", "error", "pcall", "assert"}


def lua_scripts() -> set[str]:
    return {p.stem for p in LUA.glob("*.lua") if not p.stem.startswith("_")}


def redis_operations() -> set[str]:
    """What RedisStore runs: its scripts and its reads."""
    return lua_scripts() | set(READS)


def memory_twins() -> set[str]:
    store = MemoryStore()
    return set(store._scripts) | {OPS[kind].name for kind in store._reads}


def code(path: Path) -> str:
    """A Lua file without its comments (``--`` to the end of the line; the files have no block comments)."""
    return "\n".join(re.sub(r"--.*$", "", line) for line in path.read_text().splitlines())


def declared_locals(lua: str) -> set[str]:
    """Names a chunk declares: locals, local functions and their parameters, for-loop variables."""
    names: set[str] = set()
    for match in re.finditer(r"\blocal\s+function\s+(\w+)\s*\(([^)]*)\)", lua):
        names.add(match[1])
        names.update(p.strip() for p in match[2].split(",") if p.strip())
    for match in re.finditer(r"\blocal\s+(?!function\b)([\w\s,]+?)\s*(?:=|$)", lua, re.M):
        names.update(n.strip() for n in match[1].split(","))
    for match in re.finditer(r"\bfor\s+([\w\s,]+?)\s+(?:in|=)", lua):
        names.update(n.strip() for n in match[1].split(","))
    return names


def prelude_names() -> set[str]:
    """The prelude's top-level names (locals and functions, not parameters)."""
    top = [line for line in code(PRELUDE).splitlines() if line.startswith("local ")]
    return {m[1] for line in top for m in [re.match(r"local\s+(?:function\s+)?(\w+)", line)] if m}


def fields_of(spec: OpSpec) -> tuple[str, ...]:
    return (*spec.keys, *spec.args)


def test_every_redis_operation_has_a_memory_twin() -> None:
    missing = redis_operations() - memory_twins()
    assert not missing, f"Lua scripts or Redis reads without a twin in stores/memory.py: {sorted(missing)}"


def test_every_memory_twin_has_a_lua_script_or_a_redis_read() -> None:
    orphans = memory_twins() - redis_operations()
    assert not orphans, f"memory-store operations without a Lua script or a Redis read: {sorted(orphans)}"


def test_every_declared_operation_has_a_script_or_a_read_and_a_twin() -> None:
    declared = set(OPS_BY_NAME)
    assert lua_scripts() & set(READS) == set(), "an operation both a Lua script and a read in stores/redis.py"
    assert declared - redis_operations() == set(), "declared in hot_ops.py without a lua/<name>.lua or a read"
    assert declared - memory_twins() == set(), "declared in hot_ops.py without a MemoryStore._op_<name>"
    assert redis_operations() - declared == set(), "Lua scripts or reads with no operation declared in hot_ops.py"
    assert memory_twins() - declared == set(), "memory twins with no operation declared in hot_ops.py"


def test_the_reads_read_and_only_read() -> None:
    """A read is served outside Lua, so no script re-checks anything it decides on: it must not
    write (its only write, the guard's last use, is the separate SEEN_SCRIPT), and every command it
    sends touches the operation's own keys (so it stays in the user's slot on a cluster)."""
    read_only = {"HMGET", "HGETALL", "SMEMBERS"}
    for name, read in READS.items():
        spec = OPS_BY_NAME[name]
        for want in ("0", "1"):
            op = sample(spec)._replace(**{f: want for f in spec.args if f.startswith("want_")})
            for command in read.commands(op):
                assert command[0] in read_only, (name, command)
                assert command[1] in spec.flat(op)[:len(spec.keys)], (name, command)


def test_each_twin_reads_the_operation_of_its_own_name() -> None:
    """A twin's ``op`` parameter is annotated with the class declared under its name, so mypy
    checks the fields it reads against the declaration."""
    store = MemoryStore()
    twins = {**store._scripts, **{OPS[kind].name: read for kind, read in store._reads.items()}}
    for name, twin in twins.items():
        hints = typing.get_type_hints(twin)
        assert hints.get("op") is OPS_BY_NAME[name].type, f"MemoryStore twin of {name} reads {hints.get('op')}"


def test_every_script_is_loaded_by_the_redis_store() -> None:
    from banata_middleware.stores.redis import load_scripts

    scripts = load_scripts()
    assert set(scripts) == lua_scripts()
    for name, body in scripts.items():
        assert body.startswith(lua_header(OPS_BY_NAME[name])), f"{name} is loaded without its generated header"


@pytest.mark.parametrize("path", sorted(LUA.glob("*.lua")), ids=lambda p: p.name)
def test_no_script_indexes_keys_or_argv_by_hand(path: Path) -> None:
    """Positions live in hot_ops.py: the generated header is the only Lua that reads KEYS or ARGV."""
    found = re.findall(r"\b(?:KEYS|ARGV)\b.{0,6}", code(path))
    assert not found, f"{path.name} reads KEYS/ARGV itself ({found}); name the field in hot_ops.py instead"


@pytest.mark.parametrize("name", sorted(set(OPS_BY_NAME) - set(READS)))
def test_field_names_are_lua_locals_that_hide_nothing(name: str) -> None:
    """Each field becomes a Lua local of its name: it must be a valid name, not hide a global or a
    prelude function, and not be declared again (shadowed) by the script that reads it."""
    spec = OPS_BY_NAME[name]
    taken = prelude_names() | LUA_GLOBALS
    redeclared = declared_locals(code(LUA / f"{name}.lua"))
    for field in fields_of(spec):
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", field), field
        assert field not in LUA_RESERVED, f"{name}.{field} is a Lua keyword"
        assert field not in taken, f"{name}.{field} hides a Lua global or a prelude name"
        assert field not in redeclared, f"lua/{name}.lua declares its field {field} again"


def test_the_prelude_reads_only_the_head_of_the_fields() -> None:
    """The prelude serves every script: the only fields it may use are the user head's, which every
    header binds (to nil for an operation that has no head)."""
    lua = code(PRELUDE)
    every_field = {f for spec in OPS_BY_NAME.values() for f in fields_of(spec)}
    lua = re.sub(r"'[^']*'", "''", lua)  # not in string literals
    used = {f for f in every_field if re.search(rf"(?<![.\w]){f}\b", lua)} - declared_locals(lua)
    assert used <= set(Head._fields), sorted(used - set(Head._fields))


def sample(spec: OpSpec) -> tuple[object, ...]:
    """An instance of the operation whose every field holds its own name (a Rest field: two values)."""
    hints = typing.get_type_hints(spec.type)
    values: dict[str, object] = {}
    for field in spec.type._fields:
        if field == "head":
            values[field] = Head(*Head._fields)
        elif hints[field] == tuple[str, ...]:
            values[field] = (f"{field}.1", f"{field}.2")
        else:
            values[field] = field
    return spec.type(**values)  # type: ignore[no-any-return]


@pytest.mark.parametrize("name", sorted(OPS_BY_NAME))
def test_the_header_binds_each_field_where_flat_sends_it(name: str) -> None:
    spec = OPS_BY_NAME[name]
    sent = spec.flat(sample(spec))
    keys, argv = list(sent[:len(spec.keys)]), list(sent[len(spec.keys):])
    header = lua_header(spec)
    for field in spec.keys:
        index = int(re.search(rf"^local {field} = KEYS\[(\d+)\]$", header, re.M)[1])  # type: ignore[index]
        assert keys[index - 1] == field
    for field in spec.args:
        if spec.rest and field == spec.args[-1]:
            index = int(re.search(rf"^local {field} = {{unpack\(ARGV, (\d+)\)}}$", header, re.M)[1])  # type: ignore[index]
            assert argv[index - 1:] == [f"{field}.1", f"{field}.2"]
        else:
            index = int(re.search(rf"^local {field} = ARGV\[(\d+)\]$", header, re.M)[1])  # type: ignore[index]
            assert argv[index - 1] == field
    assert len(sent) == len(spec.keys) + len(spec.args) + (1 if spec.rest else 0)


def test_every_operation_starts_with_now() -> None:
    """The prelude's NOW is now_ms: the first argument (the head's, for a user operation)."""
    for spec in OPS_BY_NAME.values():
        assert spec.args[0] == "now_ms", spec.name


def test_a_declaration_that_would_misplace_a_field_is_refused() -> None:
    """What the stores rely on, checked when an operation is declared: keys first and named
    ``*_key``, a variadic argument only last, ``now_ms`` first among the arguments, one name each.
    (The classes' annotations are read in this module's globals: Key and Rest are imported above.)"""
    def declare(name: str, cls: type) -> None:
        hot_op(name, list)(cls)

    class KeyAfterArgument(NamedTuple):
        now_ms: int
        user_key: Key

    class KeyNotSoNamed(NamedTuple):
        user: Key
        now_ms: int

    class ArgumentNamedLikeAKey(NamedTuple):
        user_key: Key
        now_ms: int
        other_key: str

    class RestNotLast(NamedTuple):
        now_ms: int
        hashes: Rest
        sid: str

    class NowNotFirst(NamedTuple):
        user_key: Key
        sid: str
        now_ms: int

    class Fine(NamedTuple):
        user_key: Key
        now_ms: int

    for cls in (KeyAfterArgument, KeyNotSoNamed, ArgumentNamedLikeAKey, RestNotLast, NowNotFirst):
        with pytest.raises(TypeError):
            declare(f"test_{cls.__name__}", cls)
    with pytest.raises(TypeError, match="two operations named guard"):
        declare("guard", Fine)
    assert not any(spec.name.startswith("test_") for spec in OPS.values())


@pytest.mark.parametrize("name", sorted(OPS_BY_NAME))
def test_an_operations_repr_names_its_keys_never_its_arguments(name: str) -> None:
    """Arguments may be a secret's ciphertext, code hashes or a client's address: logs and error
    reports print reprs, so an operation's shows whose keys it touches and how many arguments."""
    spec = OPS_BY_NAME[name]
    sent = spec.flat(sample(spec))
    shown = repr(sample(spec))
    assert all(repr(key) in shown for key in sent[:len(spec.keys)])
    assert not [arg for arg in sent[len(spec.keys):] if repr(arg) in shown], shown
