"""docs/tutorial.ipynb runs from top to bottom, and is committed without outputs."""

import os
import re

import nbclient
import nbformat

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, 'docs', 'tutorial.ipynb')


def test_committed_without_outputs():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  code = [c for c in nb.cells if c.cell_type == 'code']
  assert len(code) >= 6
  assert all(not c.outputs and c.execution_count is None for c in code)


def test_tutorial_runs():
  nb = nbformat.read(NOTEBOOK, as_version=4)
  nbclient.NotebookClient(nb, timeout=300, kernel_name='python3',
                          resources={'metadata': {'path': ROOT}}).execute()  # raises on an error
  text = '\n'.join(o.get('text', '') for c in nb.cells if c.cell_type == 'code'
                   for o in c.outputs)
  nll = float(re.search(r'NLL of these 20 digits: ([\d.]+) nats', text).group(1))
  assert 60 < nll < 120
  # The toy model's L_1000 is log p(x) to the printed digits.
  last = re.findall(r'^1000 (-[\d.]+) exact (-[\d.]+)$', text, re.M)
  assert last and abs(float(last[0][0]) - float(last[0][1])) < 0.01
