"""The README's code that users copy runs as written."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_own_model_snippet_runs():
  text = open(os.path.join(ROOT, 'README.md')).read()
  section = text.split('## Using the bounds on your own model', 1)[1]
  code = re.search(r'```python\n(.*?)```', section, re.S).group(1)
  scope = {}
  exec(compile(code, 'README.md', 'exec'), scope)  # pylint: disable=exec-used
  import numpy as np
  assert float(scope['loss']) > 0 and np.isfinite(float(scope['loss']))
  assert np.all(scope['bounds'].iwae_bound(scope['log_w']) >= scope['bounds'].elbo(scope['log_w']))


def test_layout_table_names_every_module():
  text = open(os.path.join(ROOT, 'README.md')).read()
  modules = sorted(f for f in os.listdir(os.path.join(ROOT, 'iwae_tf'))
                   if f.endswith('.py') and f != '__init__.py')
  missing = [m for m in modules if f'iwae_tf/{m}' not in text.split('## Layout', 1)[1]]
  assert not missing, missing
