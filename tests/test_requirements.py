"""A fresh machine gets what the code imports: requirements.txt and pyproject.toml
name the same distributions, and every third-party module that the package, the
scripts, the benchmarks and the tests import comes from one of them (directly:
a module reached only through another package's dependencies can vanish with
that package's next release)."""

import ast
import importlib.metadata
import pathlib
import re
import sys
import tomllib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = ('iwae_tf', 'plots', 'bench', 'tests', 'docs')


def _name(requirement):
  """A requirement's distribution name, normalised (PEP 503)."""
  return re.sub(r'[-_.]+', '-', re.split(r'[\s\[<>=!~;]', requirement.strip(), 1)[0]).lower()


def _spec(requirement):
  return re.sub(r'\s+', '', requirement)


def requirements():
  lines = (ROOT / 'requirements.txt').read_text().splitlines()
  return [l.strip() for l in lines if l.strip() and not l.lstrip().startswith(('#', '-'))]


def pyproject_requirements():
  project = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']
  extras = [r for group in project.get('optional-dependencies', {}).values() for r in group]
  return project['dependencies'] + extras


def imported_modules():
  """``{top-level module: first file importing it}`` of the project's Python files."""
  files = sorted(ROOT.glob('*.py')) + sorted(p for d in SOURCES for p in (ROOT / d).rglob('*.py'))
  local = ({p.name for p in ROOT.iterdir() if p.is_dir()} | {p.stem for p in ROOT.glob('*.py')}
           | {p.stem for d in ('tests', 'bench') for p in (ROOT / d).glob('*.py')})
  found = {}
  for f in files:
    for node in ast.walk(ast.parse(f.read_text(), str(f))):
      if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [node.module]
      else:
        continue
      for name in names:
        top = name.split('.')[0]
        if top not in sys.stdlib_module_names and top not in local:
          found.setdefault(top, str(f.relative_to(ROOT)))
  return found


def test_requirements_and_pyproject_agree():
  assert sorted(map(_spec, requirements())) == sorted(map(_spec, pyproject_requirements()))


def undeclared(modules, declared):
  """The entries of ``modules`` (``imported_modules``) that no distribution in
  ``declared`` (normalised names) provides, each as a line."""
  providers = importlib.metadata.packages_distributions()
  missing = []
  for module, where in sorted(modules.items()):
    dists = {_name(d) for d in providers.get(module, [])}
    if not dists & declared:
      missing.append(f'{module} (imported in {where}; from {sorted(dists) or "nothing installed"})')
  return missing


def test_every_imported_module_is_a_declared_requirement():
  modules = imported_modules()
  assert {'tensorflow', 'numpy', 'scipy', 'keras'} <= set(modules)  # the scan sees the imports
  missing = undeclared(modules, {_name(r) for r in requirements()})
  assert not missing, 'not in requirements.txt: ' + '; '.join(missing)


def test_an_undeclared_import_is_reported():
  declared = {_name(r) for r in requirements()} - {'scipy'}
  assert undeclared({'scipy': 'iwae_tf/datasets/omniglot.py', 'numpy': 'x.py'}, declared) == [
      "scipy (imported in iwae_tf/datasets/omniglot.py; from ['scipy'])"]
  assert undeclared({'no_such_module_xyz': 'x.py'}, declared) == [
      'no_such_module_xyz (imported in x.py; from nothing installed)']
