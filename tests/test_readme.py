"""The documents' code that users copy runs as written, their commands use flags
that exist, and the numbers they quote are committed measurements: the README,
docs/REPORT.md, docs/DESIGN.md and bench/README.md."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCUMENTS = ('README.md', 'docs/REPORT.md', 'docs/DESIGN.md', 'bench/README.md')


def read(doc):
  with open(os.path.join(ROOT, doc)) as f:
    return f.read()


def run_snippet(heading, doc='README.md'):
  """Runs the first Python block after ``heading``; returns its variables."""
  text = read(doc)
  section = text.split(heading, 1)[1]
  code = re.search(r'```python\n(.*?)```', section, re.S).group(1)
  scope = {}
  exec(compile(code, 'README.md', 'exec'), scope)  # pylint: disable=exec-used
  return scope


def test_own_model_snippet_runs():
  scope = run_snippet('## The bounds on your own model')
  import numpy as np
  assert float(scope['loss']) > 0 and np.isfinite(float(scope['loss']))
  assert np.all(scope['bounds'].iwae_bound(scope['log_w']) >= scope['bounds'].elbo(scope['log_w']))


def test_layout_table_names_every_module():
  text = read('docs/DESIGN.md')
  package = os.path.join(ROOT, 'iwae_tf')
  modules = sorted(f for f in os.listdir(package) if f.endswith('.py') and f != '__init__.py')
  modules += sorted(f'{d}/' for d in os.listdir(package)
                    if os.path.exists(os.path.join(package, d, '__init__.py')))
  missing = [m for m in modules if f'iwae_tf/{m}' not in text.split('## Layout', 1)[1]]
  assert not missing, missing


def test_model_and_trainer_snippet_runs():
  scope = run_snippet('## The model and the trainer', 'docs/DESIGN.md')
  assert scope['log_w'].shape == (5, 20)
  assert [v.path for v in scope['variables']] == [
      v.path for v in scope['m'].encoder_variables + scope['m'].decoder_variables]
  assert all(g is not None for g in scope['grads'])
  assert scope['fit_me'].model is scope['m']


def test_pretrained_snippet_runs(capsys):
  scope = run_snippet('## A trained model in five lines')
  assert scope['samples'].shape == (64, 784)
  nll = float(capsys.readouterr().out.strip().splitlines()[-1])
  assert 60 < nll < 120


def test_tables_are_those_the_committed_results_make():
  """The documents' generated tables are evaluate.py's output from results/:
  rerun `python evaluate.py --table --write=README.md,docs/REPORT.md` after
  adding results."""
  from iwae_tf import results as results_lib, tables as tables_lib
  results = list(results_lib.read_results(os.path.join(ROOT, 'results')))
  block = lambda text, begin, end: text.split(begin, 1)[1].split(end, 1)[0].lstrip('\n')  # noqa: E731
  expected = tables_lib.tables(results)
  wanted = {'README.md': [(tables_lib.HEADLINE_BEGIN, tables_lib.HEADLINE_END)],
            'docs/REPORT.md': list(expected)}
  for doc, blocks in wanted.items():
    text = read(doc)
    for begin, end in blocks:
      assert block(text, begin, end) == expected[(begin, end)], (doc, begin)
  assert expected[(tables_lib.HEADLINE_BEGIN, tables_lib.HEADLINE_END)].count('\n') > 4


def test_readme_is_short_and_links_the_rest():
  text = read('README.md')
  assert len(text.splitlines()) <= 150
  for doc in DOCUMENTS[1:]:
    assert f']({doc})' in text, doc
    assert os.path.exists(os.path.join(ROOT, doc))
  prose = re.sub(r'\s+', ' ', ' '.join(read(d) for d in DOCUMENTS).lower())
  assert 'at this writing' not in prose and 'so far' not in prose


def readme_commands():
  """``(script, {flag: value})`` of every ``python <script>.py ...`` command in
  the documents: in shell blocks (continued lines joined) and inline code."""
  text = '\n'.join(read(d) for d in DOCUMENTS)
  lines = [l for block in re.findall(r'```bash\n(.*?)```', text, re.S)
           for l in block.replace('\\\n', ' ').splitlines()]
  prose = re.sub(r'```.*?```', '', text, flags=re.S).replace('\n', ' ')
  lines += re.findall(r'`([^`]*python [^`]*)`', prose)
  out = []
  for line in lines:
    for script, args in re.findall(r'python (\S+\.py)((?:(?!python )[^#;&|])*)', line):
      out.append((script, dict(re.findall(r'(?:^|\s)--([a-z_0-9]+)(?:=(\S*))?', args))))
  return out


def defined_flags(script):
  """The flags ``script`` defines, and absl's own (``--help``)."""
  with open(os.path.join(ROOT, script)) as f:
    return set(re.findall(r"flags\.DEFINE_\w+\(\s*'(\w+)'", f.read())) | {'help', 'helpfull'}


def test_readme_commands_use_flags_their_scripts_define():
  """A renamed or removed flag, or a choice no longer offered, fails here
  before a user copies the command."""
  commands = readme_commands()
  assert {s for s, _ in commands} >= {'train.py', 'evaluate.py', 'plots/regenerate.py',
                                      'reproduce.py'}
  unknown = [(script, flag) for script, names in commands for flag in names
             if flag not in defined_flags(script) and flag[2:] not in defined_flags(script)]
  assert not unknown, unknown
  # The flag table of train.py, too.
  # Choices from the registries the flags are made from.
  from iwae_tf import config
  choices = {'objective': config.OBJECTIVES, 'estimator': config.ESTIMATORS,
             'schedule': config.SCHEDULES, 'strategy': config.STRATEGIES,
             'dataset': config.DATASETS, 'binarization': config.BINARIZATIONS,
             'procedure': config.PROCEDURES}
  bad = [(flag, args[flag]) for script, args in commands if script == 'train.py'
         for flag in choices if flag in args and args[flag] not in choices[flag]]
  assert not bad, bad
  assert sum('schedule' in args for _, args in commands) > 5  # the check saw values


def results_prose():
  """The README and docs/REPORT.md's "## Results" text up to the poster-budget
  section, without the generated tables and code blocks: the prose typed by hand."""
  from iwae_tf import tables as tables_lib
  report = read('docs/REPORT.md')
  section = (read('README.md') + '\n' +
             report.split('\n## Results\n', 1)[1].split('\n### Earlier measurements', 1)[0])
  for begin, end in tables_lib.tables([]):
    while begin in section:
      section = section.split(begin, 1)[0] + section.split(end, 1)[1]
  return re.sub(r'```.*?```', '', section, flags=re.S)


def test_results_prose_quotes_committed_measurements():
  """Every test NLL the introduction and the Results prose quote (``86.37``
  or ``86.37 ± 0.23``) is a committed result's or the paper's, and every
  ``0.45 ± 0.03`` difference is the paired difference of two committed
  results at the same epoch: a number typed by hand that no file backs fails
  here."""
  import itertools
  from iwae_tf import paper, results as results_lib
  results = list(results_lib.read_results(os.path.join(ROOT, 'results')))
  known = {f'{r.nll:.2f}' for r in results}
  known |= {f'{r.nll:.2f} ± {r.stderr:.2f}' for r in results}
  known |= {f'{v:.2f}' for ks in paper.TABLE1['mnist'].values() for v in ks.values()}
  for a, b in itertools.combinations(results, 2):
    diff = a.epoch == b.epoch and results_lib.paired_difference(a, b)
    if diff:
      known.add(f'{abs(diff[0]):.2f} ± {diff[1]:.2f}')
  prose = results_prose()
  quoted = re.findall(r'(?<![\d.])(\d{1,3}\.\d\d(?: ± \d\.\d\d)?)(?![\d])', prose)
  claims = [q for q in quoted if ' ± ' in q or float(q) >= 50]  # NLLs, and differences with ±
  assert len(claims) > 10, claims  # the check saw the prose
  unbacked = sorted(set(claims) - known)
  assert not unbacked, unbacked


def figure_numbers(value):
  """The ways the README may quote a number of ``figures/measurements.json``:
  to 1 or 2 decimals, without its sign, and a fraction as a percentage."""
  if isinstance(value, (dict, list)):
    return set().union(*map(figure_numbers, value.values() if isinstance(value, dict) else value))
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return set()
  out = {f'{abs(value):.1f}', f'{abs(value):.2f}'}
  return out | ({f'{100 * value:.0f}%'} if 0 <= value <= 1 else set())


def test_figures_prose_quotes_measurements():
  """Every decimal number and percentage the Figures section quotes is one of
  ``figures/measurements.json``, which the figure script writes with each
  figure: a number typed by hand that the figures do not back fails here."""
  import json
  text = read('docs/REPORT.md')
  section = text.split('\n## Figures\n', 1)[1].split('\n## ', 1)[0]
  prose = re.sub(r'```.*?```', '', section, flags=re.S)
  quoted = re.findall(r'(?<![\d.])(\d+\.\d+|\d+%)', prose)
  with open(os.path.join(ROOT, 'figures', 'measurements.json')) as f:
    known = figure_numbers(json.load(f))
  assert len(quoted) > 10, quoted  # the check saw the prose
  unbacked = sorted(set(quoted) - known)
  assert not unbacked, unbacked


def test_ci_runs_the_readmes_test_command():
  """What CI checks is what a new user runs."""
  command = re.search(r'^python -m pytest [^#\n]*', read('README.md'), re.M).group(0).strip()
  assert command in read('.ci/run').splitlines()
