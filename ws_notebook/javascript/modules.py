"""JavaScript handler modules read with a real parser (tree-sitter), and turned into scripts.

V8 as mini-racer embeds it evaluates scripts, not ES modules: ``export function onMessage``
is a syntax error there. :func:`analyse` parses a module with tree-sitter's JavaScript grammar
and rewrites only its ``import`` and ``export`` statements, keeping every other byte and every
line where it was, so that V8's errors and stack traces name the lines of the file as written:

- an ``import`` becomes a ``const`` bound from ``require(...)`` in a prologue run first (imports
  are hoisted in a module too), and the statement itself is blanked out with spaces;
- ``export`` in front of a declaration is blanked out, and the name is exported through a
  getter, so the export reads the binding as it is now (a module's exports are live);
- ``export default EXPRESSION`` assigns the module's ``default``; ``export { a as b }``,
  ``export ... from`` and ``export * from`` become getters in the prologue.

A CommonJS module (``exports.onOpen = ...``, ``module.exports = {...}``, ``require(...)``) is
left as it is. Both kinds run inside a function of ``(exports, require, module, __filename,
__dirname)``, as Node.js runs CommonJS; the prologue goes on the same line as the wrapper's
opening, so the module's own lines keep their numbers.

The parse also says, without running anything, which names the module exports and on which
line each is defined (for ``ws-notebook validate`` and to place a handler that timed out), and
which modules it requires by name (a string literal), so that they can be read from disk and
defined before the module runs: JavaScript running in V8 cannot read files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import tree_sitter_javascript
from tree_sitter import Language, Node, Parser

__all__ = ["ModuleText", "analyse"]

_LANGUAGE = Language(tree_sitter_javascript.language())

# Names the rewritten code uses; a module would have to spell them out to collide with them.
EXPORTS = "__ws_exports"
_MODULE = "__ws_module_"


@dataclass
class ModuleText:
    """A module rewritten as the body of a function, and what the parse found in it."""

    prologue: str  # one line of code to run first, on the module's first line
    body: str  # the module's text, with import/export statements rewritten; same lines
    esm: bool  # an ES module (it has import or export statements)
    # Modules named by import and export-from statements: (specifier, line); they must exist.
    imports: list[tuple[str, int]] = field(default_factory=list)
    # Modules named by ``require("...")`` calls, which may be optional (inside a try).
    requires: list[tuple[str, int]] = field(default_factory=list)
    # Exported names and the line (1-based) of what defines each; for CommonJS, the names
    # assigned to ``exports.NAME`` / ``module.exports.NAME`` or listed in ``module.exports = {}``.
    exports: dict[str, int] = field(default_factory=dict)
    # The first place the parser could not make sense of: (line, column), 1-based.
    syntax_error: tuple[int, int] | None = None


def _parser() -> Parser:
    return Parser(_LANGUAGE)


def _text(source: bytes, node: Node) -> str:
    return source[node.start_byte : node.end_byte].decode("utf-8", "replace")


def _line(node: Node) -> int:
    return node.start_point[0] + 1


def _string_value(source: bytes, node: Node | None) -> str | None:
    """The value of a string literal node (with its escapes resolved), or None."""
    if node is None or node.type != "string":
        return None
    raw = _text(source, node)
    if raw[:1] == "'":  # single quotes: make it a JSON string
        raw = '"' + raw[1:-1].replace('\\"', '"').replace('"', '\\"') + '"'
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, str) else None


def _blank(source: bytes, start: int, end: int) -> bytes:
    """The bytes from ``start`` to ``end`` as spaces, keeping line breaks (so lines keep their
    numbers) and the byte count (so later offsets stay valid)."""
    return bytes(b if b in b"\r\n" else 0x20 for b in source[start:end])


def _pattern_names(node: Node) -> list[Node]:
    """The identifiers a declaration pattern binds: ``a``, ``{ b, c: [d] }``, ``...e``."""
    if node.type in ("identifier", "shorthand_property_identifier_pattern"):
        return [node]
    if node.type == "pair_pattern":
        value = node.child_by_field_name("value")
        return _pattern_names(value) if value is not None else []
    if node.type == "assignment_pattern":
        left = node.child_by_field_name("left")
        return _pattern_names(left) if left is not None else []
    if node.type == "object_assignment_pattern":
        left = node.child_by_field_name("left")
        return _pattern_names(left) if left is not None else []
    names: list[Node] = []
    if node.type in ("object_pattern", "array_pattern", "rest_pattern"):
        for child in node.named_children:
            names.extend(_pattern_names(child))
    return names


def _declared(declaration: Node) -> list[Node]:
    """The name nodes a declaration binds (function, class, const/let/var)."""
    if declaration.type in ("lexical_declaration", "variable_declaration"):
        names: list[Node] = []
        for declarator in declaration.named_children:
            if declarator.type == "variable_declarator":
                name = declarator.child_by_field_name("name")
                if name is not None:
                    names.extend(_pattern_names(name))
        return names
    name = declaration.child_by_field_name("name")
    return [name] if name is not None else []


def _first_error(node: Node) -> tuple[int, int] | None:
    if not node.has_error:
        return None
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == "ERROR" or current.is_missing:
            return current.start_point[0] + 1, current.start_point[1] + 1
        stack.extend(reversed([child for child in current.children if child.has_error]))
    return node.start_point[0] + 1, node.start_point[1] + 1


def _walk(node: Node):
    cursor = node.walk()
    visited_children = False
    while True:
        if not visited_children:
            yield cursor.node
            if cursor.goto_first_child():
                continue
        if cursor.goto_next_sibling():
            visited_children = False
        elif cursor.goto_parent():
            visited_children = True
        else:
            return


def _requires(source: bytes, root: Node) -> list[tuple[str, int]]:
    """``require("name")`` calls with a string literal, anywhere in the module."""
    found = []
    for node in _walk(root):
        if node.type != "call_expression":
            continue
        function = node.child_by_field_name("function")
        arguments = node.child_by_field_name("arguments")
        if (
            function is None
            or function.type != "identifier"
            or _text(source, function) != "require"
        ):
            continue
        if arguments is None or arguments.named_child_count != 1:
            continue
        name = _string_value(source, arguments.named_children[0])
        if name is not None:
            found.append((name, _line(node)))
    return found


def _top_level_functions(source: bytes, root: Node) -> dict[str, int]:
    """Top-level function and class declarations (and ``const f = function/arrow``), by name."""
    found: dict[str, int] = {}
    for statement in root.named_children:
        node = statement
        if node.type == "export_statement":
            node = node.child_by_field_name("declaration") or node
        if node.type in (
            "function_declaration",
            "generator_function_declaration",
            "class_declaration",
        ):
            name = node.child_by_field_name("name")
            if name is not None:
                found[_text(source, name)] = _line(node)
        elif node.type in ("lexical_declaration", "variable_declaration"):
            for declarator in node.named_children:
                name = declarator.child_by_field_name("name")
                if (
                    declarator.type == "variable_declarator"
                    and name is not None
                    and name.type == "identifier"
                ):
                    found[_text(source, name)] = _line(declarator)
    return found


def _commonjs_exports(source: bytes, root: Node, functions: dict[str, int]) -> dict[str, int]:
    """Names a CommonJS module exports: ``exports.X =``, ``module.exports.X =``, and the
    properties of ``module.exports = { ... }`` (each at the line defining it)."""
    found: dict[str, int] = {}

    def where(value: Node | None, fallback: Node) -> int:
        if value is not None and value.type == "identifier":
            return functions.get(_text(source, value), _line(fallback))
        return _line(value if value is not None else fallback)

    for node in _walk(root):
        if node.type != "assignment_expression":
            continue
        left = node.child_by_field_name("left")
        right = node.child_by_field_name("right")
        if left is None or left.type != "member_expression":
            continue
        target = _text(source, left.child_by_field_name("object") or left)
        prop = left.child_by_field_name("property")
        prop_name = _text(source, prop) if prop is not None else ""
        if target in ("exports", "module.exports"):
            found[prop_name] = where(right, node)
        elif target == "module" and prop_name == "exports" and right is not None:
            if right.type == "object":
                for item in right.named_children:
                    if item.type == "pair":
                        key = item.child_by_field_name("key")
                        if key is not None:
                            name = _string_value(source, key) or _text(source, key)
                            found[name] = where(item.child_by_field_name("value"), item)
                    elif item.type == "method_definition":
                        key = item.child_by_field_name("name")
                        if key is not None:
                            found[_text(source, key)] = _line(item)
                    elif item.type == "shorthand_property_identifier":
                        found[_text(source, item)] = where(item, item)
            elif right.type == "identifier":
                found["default"] = where(right, node)
    return found


def analyse(source: str, esm: bool | None = None) -> ModuleText:
    """Parse a handler module and rewrite it as a function body (see the module docstring).

    ``esm``: True for ``.mjs``, False for ``.cjs``; None decides by the module's statements.
    """
    data = source.encode("utf-8")
    tree = _parser().parse(data)
    root = tree.root_node
    statements = root.named_children
    has_module_syntax = any(s.type in ("import_statement", "export_statement") for s in statements)
    is_esm = has_module_syntax if esm is None else esm
    functions = _top_level_functions(data, root)
    requires = _requires(data, root)
    result = ModuleText("", source, is_esm, [], requires, {}, _first_error(root))
    if not has_module_syntax:
        result.exports = _commonjs_exports(data, root, functions)
        result.prologue = '"use strict";' if is_esm else ""
        return result

    edits: list[tuple[int, int, bytes]] = []  # (start, end, replacement): same line breaks
    prologue: list[str] = ['"use strict";'] if is_esm else []
    exports: dict[str, int] = {}
    imports: list[tuple[str, int]] = []
    counter = 0

    def bind_module(specifier: str, line: int) -> str:
        nonlocal counter
        name = f"{_MODULE}{counter}"
        counter += 1
        prologue.append(f"const {name} = require({json.dumps(specifier)});")
        imports.append((specifier, line))
        return name

    def getter(exported: str, expression: str) -> None:
        prologue.append(
            f"Object.defineProperty({EXPORTS}, {json.dumps(exported)}, "
            f"{{ enumerable: true, configurable: true, get: () => {expression} }});"
        )

    for statement in statements:
        if statement.type == "import_statement":
            specifier = _string_value(data, statement.child_by_field_name("source"))
            if specifier is None:
                continue
            module = bind_module(specifier, _line(statement))
            clause = next((c for c in statement.named_children if c.type == "import_clause"), None)
            for part in clause.named_children if clause is not None else []:
                if part.type == "identifier":  # import x from "m"
                    prologue.append(
                        f"const {_text(data, part)} = ({module} && {module}.__esModule) "
                        f"? {module}.default : {module};"
                    )
                elif part.type == "namespace_import":  # import * as x from "m"
                    namespace = next(c for c in part.named_children if c.type == "identifier")
                    prologue.append(f"const {_text(data, namespace)} = {module};")
                elif part.type == "named_imports":  # import { a, b as c } from "m"
                    pairs = []
                    for spec in part.named_children:
                        if spec.type != "import_specifier":
                            continue
                        name = spec.child_by_field_name("name")
                        alias = spec.child_by_field_name("alias")
                        assert name is not None  # a field the grammar requires
                        imported = _string_value(data, name) or _text(data, name)
                        local = _text(data, alias if alias is not None else name)
                        pairs.append(f"{json.dumps(imported)}: {local}")
                    if pairs:
                        prologue.append(f"const {{ {', '.join(pairs)} }} = {module};")
            edits.append((statement.start_byte, statement.end_byte, b""))
            continue
        if statement.type != "export_statement":
            continue
        keyword = statement.children[0]  # "export"
        default = next((c for c in statement.children if c.type == "default"), None)
        declaration = statement.child_by_field_name("declaration")
        value = statement.child_by_field_name("value")
        source_node = statement.child_by_field_name("source")
        if default is not None:
            exports["default"] = _line(statement)
            named = declaration.child_by_field_name("name") if declaration is not None else None
            if named is not None:  # export default function onMessage() {}
                edits.append((keyword.start_byte, default.end_byte, b""))
                getter("default", _text(data, named))
            else:  # export default EXPRESSION, or an anonymous function or class
                edits.append(
                    (keyword.start_byte, default.end_byte, f"{EXPORTS}.default =".encode())
                )
                target = value if value is not None else declaration
                if target is not None and data[target.end_byte - 1 : target.end_byte] != b";":
                    edits.append((target.end_byte, target.end_byte, b";"))
            continue
        if declaration is not None:  # export function f() {}, export const a = 1, ...
            edits.append((keyword.start_byte, keyword.end_byte, b""))
            for name in _declared(declaration):
                getter(_text(data, name), _text(data, name))
                exports[_text(data, name)] = _line(name)
            continue
        specifier = _string_value(data, source_node)
        from_module = bind_module(specifier, _line(statement)) if specifier is not None else None
        edits.append((statement.start_byte, statement.end_byte, b""))
        for part in statement.named_children:
            if part.type == "export_clause":  # export { a, b as c } [from "m"]
                for spec in part.named_children:
                    if spec.type != "export_specifier":
                        continue
                    name = spec.child_by_field_name("name")
                    alias = spec.child_by_field_name("alias")
                    assert name is not None  # a field the grammar requires
                    local = _string_value(data, name) or _text(data, name)
                    exported = local
                    if alias is not None:
                        exported = _string_value(data, alias) or _text(data, alias)
                    if from_module is not None:
                        getter(exported, f"{from_module}[{json.dumps(local)}]")
                        exports[exported] = _line(spec)
                    else:
                        getter(exported, local)
                        exports[exported] = functions.get(local, _line(spec))
            elif part.type == "namespace_export" and from_module is not None:  # export * as ns
                namespace = next(c for c in part.named_children if c.type == "identifier")
                getter(_text(data, namespace), from_module)
                exports[_text(data, namespace)] = _line(statement)
        star = any(c.type == "*" for c in statement.children)
        if (
            star
            and from_module is not None
            and not any(c.type == "namespace_export" for c in statement.named_children)
        ):  # export * from "m"
            prologue.append(
                f"for (const key of Object.keys({from_module})) if (key !== 'default' && "
                f"!Object.prototype.hasOwnProperty.call({EXPORTS}, key)) "
                f"Object.defineProperty({EXPORTS}, key, {{ enumerable: true, "
                f"configurable: true, get: () => {from_module}[key] }});"
            )

    body = bytearray()
    position = 0
    for start, end, replacement in sorted(edits, key=lambda edit: (edit[0], edit[1])):
        body += data[position:start]
        if replacement:  # keep the line breaks of what is replaced, after the replacement
            body += replacement + bytes(b for b in data[start:end] if b in b"\r\n")
        else:
            body += _blank(data, start, end)
        position = end
    body += data[position:]
    result.body = body.decode("utf-8")
    result.prologue = " ".join(prologue)
    result.exports = exports
    result.imports = imports
    return result
