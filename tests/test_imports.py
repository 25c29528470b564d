"""Imports inside genmodels/ run one way, function-local imports included (DESIGN.md):

    config, data, nets, train_state, ... -> metrics -> families -> evaluation -> trainer

so a module never needs a function-local import to dodge a cycle.
"""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, 'genmodels')

# Layer of each module (by dotted-name prefix; the longest matching prefix wins). A module may import
# only modules of its own layer or lower ones.
LAYERS = {
    'genmodels': 0, 'genmodels.config': 0, 'genmodels.viz': 0, 'genmodels.compare': 0,
    'genmodels.cli': 0, 'genmodels.xla_cpu': 0,
    'genmodels.data': 0, 'genmodels.nn': 0, 'genmodels.classical': 0,
    'genmodels.training': 1,
    'genmodels.metrics': 1,
    'genmodels.families': 2,
    'genmodels.evaluation': 3,
    'genmodels.trainer': 4,
}


def module_files() -> dict[str, str]:
    """Dotted module name -> path, for every .py file under genmodels/."""
    out = {}
    for folder, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if parts[-1] == '__init__':
                    parts = parts[:-1]
                out['.'.join(parts)] = path
    return out


def imports_of(name: str, path: str, modules: set[str]) -> set[str]:
    """The genmodels modules that `name` imports anywhere in its file (any nesting level)."""
    is_package = path.endswith('__init__.py')
    found = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:  # relative: from the module's package upwards
                anchor = name.split('.')
                anchor = anchor[:len(anchor) - node.level + (1 if is_package else 0)]
                base = '.'.join(anchor + ([base] if base else []))
            for alias in node.names:
                child = f'{base}.{alias.name}'
                found.add(child if child in modules else base)
    return {m for m in found if m in modules and m != name}


def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def layer(module: str) -> int:
    prefixes = [p for p in LAYERS if module == p or module.startswith(p + '.')]
    assert prefixes, f'{module} has no layer in tests/test_imports.py: add it to LAYERS.'
    return LAYERS[max(prefixes, key=len)]


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_parser_sees_function_local_and_relative_imports(tmp_path):
    source = 'def f():\n    from genmodels import trainer\n    import genmodels.data\n'
    path = tmp_path / 'm.py'
    path.write_text(source)
    modules = {'genmodels', 'genmodels.trainer', 'genmodels.data', 'genmodels.x'}
    assert imports_of('genmodels.x', str(path), modules) == {'genmodels.trainer', 'genmodels.data'}
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set()}) is None


def test_no_import_cycles():
    cycle = find_cycle(graph())
    assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def test_no_module_imports_a_higher_layer():
    upward = [f'{src} -> {dst}' for src, dsts in graph().items() for dst in dsts
              if layer(dst) > layer(src)]
    assert not upward, 'imports against the layering: ' + ', '.join(sorted(upward))
