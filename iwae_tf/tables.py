"""Reporting: the Markdown tables made from results, and writing them into
documents between their markers.

``table`` lays the newest result of each run out like the paper's Table 1,
with the paper's and the poster's numbers beside ours, then the paired
blocks (``results.py``); ``learning_curve_table`` follows the paper-schedule
runs over the schedule's stage ends, and ``departure_curve_table`` the runs
that depart from the paper's setup beside those that do not;
``headline_table`` shows the cells measured after the paper's full budget.
Each document (the README, the report) holds the tables it shows between
markers, which ``write_tables`` fills.
"""

import os

from iwae_tf import errors
from iwae_tf import paper
from iwae_tf import results as results_lib


class TableError(errors.IWAEError):
  """A document that holds no table to fill."""


def _labels(r):
  """The table's objective and epochs cells: ``VAE k=1 → IWAE`` and ``70 + 20``
  for a run started from another run's weights."""
  obj, epoch = r.config['objective']['name'].upper(), str(r.epoch)
  source = r.source
  if source:
    obj = f"{results_lib.name_k(source['objective'])} → {obj}"
    epoch = f"{source['epoch']} + {epoch}"
  return obj, epoch


def _cell(value, spec='.2f'):
  """A table cell: ``value`` formatted, or ``–`` for None."""
  return '–' if value is None else format(value, spec)


def table(results):
  """Markdown table laid out like the paper's Table 1, with its numbers beside
  ours, then the paired blocks: IWAE - VAE (``paired_differences``), each
  departure from the paper's setup against the run without it
  (``departure_differences``), and Table 2's switched - continued runs
  (``switched_differences``)."""
  rows = []
  for r in results:
    key = r.key
    ref = paper.nll(key.dataset, key.objective, key.latents, key.k)
    poster = (paper.POSTER.get((key.objective, key.latents, key.k), {})
              if key.dataset == 'mnist' else {})
    rows.append((key, key.dataset, key.layers, *_labels(r), key.k, key.latents,
                 r.nll, r.stderr, r.k_nll,
                 '/'.join(map(str, r.active_units)),  # per stochastic layer, h1 first
                 r.pruned_nll, ref, poster.get('nll'), poster.get('active_units'),
                 ', '.join(r.departures) or '–'))
  rows.sort(key=lambda row: row[0])
  lines = ['| data | layers | objective | k | latents | epochs | test NLL (ours) | K '
           '| active units | NLL pruned | paper NLL (3280 ep.) | poster NLL (70 ep.) '
           '| poster active units | departures from the paper |',
           '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|']
  for (_, dataset, layers, obj, ep, k, lat, nll, se, kn, au, pr, ref, pn, pa, dep) in rows:
    lines.append(f'| {dataset.upper()} | {layers} | {obj} | {k} | {lat} | {ep} '
                 f'| {nll:.2f} ± {se:.2f} | {kn} | {au} | {_cell(pr)} | {_cell(ref)} | {_cell(pn)} '
                 f'| {_cell(pa, "d")} | {dep} |')
  pairs = results_lib.paired_differences(results)
  if pairs:
    lines += ['', 'Paired differences on the same test images (IWAE − VAE, test NLL; '
              'negative: IWAE ahead; ± the standard error of the per-image differences):', '',
              '| data | layers | k | latents | epochs | IWAE − VAE | paper | departures |',
              '|---|---|---|---|---|---|---|---|']
    for (key, deps), (diff, se) in sorted(pairs.items()):
      ref = _cell(paper.difference(key.dataset, key.latents, key.k, key.k), '+.2f')
      lines.append(f'| {key.dataset.upper()} | {key.layers} | {key.k} | {key.latents} '
                   f'| {key.epochs} | {diff:+.2f} ± {se:.2f} | {ref} | {deps or "–"} |')
  departed = results_lib.departure_differences(results)
  if departed:
    lines += ['', 'Departures from the paper\'s setup, against the same run without them, '
              'on the same test images; train − test: NLL on the first training images '
              '(`evaluate.py --train_subset`; for a fixed-binarisation run, the very '
              'binarisation it trained on) minus test NLL:', '',
              '| data | layers | objective | k | latents | epochs | departures '
              '| NLL − paper setup\'s | train − test | paper setup\'s train − test |',
              '|---|---|---|---|---|---|---|---|---|---|']
    gap = lambda r: '–' if r.train_nll is None else f'{r.train_nll - r.nll:+.2f}'  # noqa: E731
    for (key, deps), (r, base, diff, se) in sorted(departed.items(), key=lambda item: item[0]):
      lines.append(f'| {key.dataset.upper()} | {key.layers} | {key.objective.upper()} | {key.k} '
                   f'| {key.latents} | {key.epochs} | {deps} | {diff:+.2f} ± {se:.2f} '
                   f'| {gap(r)} | {gap(base)} |')
  switched = results_lib.switched_differences(results)
  if switched:
    lines += ['', 'Switching objectives (the paper\'s Table 2): a run continued with another '
              'objective minus the same source continued with its own, for the same epochs, '
              'on the same test images:', '',
              '| data | source | epochs | switched to | continued as | switched − continued |',
              '|---|---|---|---|---|---|']
    order = lambda item: (item[0][0].dataset, item[0][1], item[0][0].epochs, item[1][0])  # noqa: E731
    for (key, source), (a, b, diff, se) in sorted(switched.items(), key=order):
      lines.append(f'| {key.dataset.upper()} | {source} | {key.epochs} | {a} | {b} '
                   f'| {diff:+.2f} ± {se:.2f} |')
  return '\n'.join(lines) + '\n'


def curve_label(dataset, layers, lat, name):
  """``name``, with the data set, layers and latents where not MNIST, 1 and 50."""
  extra = [s for s, shown in ((dataset.upper(), dataset != 'mnist'),
                              (f'{layers} layers', layers > 1),
                              (f'{lat} latents', lat != '50')) if shown]
  return name + (f' ({", ".join(extra)})' if extra else '')


def _epoch_table(rows):
  """Markdown table of ``rows``, ``(label, {epoch: cell}, paper cell)``, one
  column per epoch any row holds, then the paper's final column."""
  epochs = sorted({e for _, cells, _ in rows for e in cells})
  lines = ['| epoch | ' + ' | '.join(map(str, epochs)) + ' | paper (3280) |',
           '|---|' + '---|' * (len(epochs) + 1)]
  for label, cells, ref in rows:
    lines.append(f'| {label} | ' + ' | '.join(cells.get(e, '') for e in epochs) + f' | {ref} |')
  return '\n'.join(lines) + '\n'


def learning_curve_table(results):
  """Markdown table of the paper-schedule runs (``learning_curves``) at the
  ends of the schedule's stages (``paper.STAGE_ENDS``): each run's test NLL
  and active units, then the paired IWAE - VAE differences
  (``learning_curve_pairs``); the last column holds the paper's final
  numbers (``paper.nll``; its IWAE - VAE for the pairs). Empty when no run was
  measured at a stage end.
  """
  curves = {key: {e: r for e, r in curve.items() if e in paper.STAGE_ENDS}
            for key, curve in results_lib.learning_curves(results).items()}
  curves = {key: curve for key, curve in curves.items() if curve}
  if not curves:
    return ''
  rows = []
  # VAE k=1, IWAE k=1, VAE k=5, IWAE k=5, ... for each data set, depth and latents.
  order = lambda key: (key.dataset, key.layers, key.latents, key.k, key.objective != 'vae')  # noqa: E731
  for key in sorted(curves, key=order):
    name = curve_label(key.dataset, key.layers, key.latents, f'{key.objective.upper()} k = {key.k}')
    rows.append((f'{name}: test NLL', {e: f'{r.nll:.2f}' for e, r in curves[key].items()},
                 _cell(paper.nll(key.dataset, key.objective, key.latents, key.k))))
    rows.append((f'{name}: active units',
                 {e: '/'.join(map(str, r.active_units)) for e, r in curves[key].items()}, ''))
  for (key, vae_k), paired in results_lib.learning_curve_pairs(curves).items():
    name = curve_label(key.dataset, key.layers, key.latents,
                       f'IWAE k = {key.k} − VAE k = {vae_k}, paired')
    rows.append((name, {e: f'{d:+.2f} ± {se:.2f}' for e, (d, se) in paired.items()},
                 _cell(paper.difference(key.dataset, key.latents, key.k, vae_k), '+.2f')))
  return _epoch_table(rows)


def departure_curve_table(results):
  """Markdown table of the paper-schedule runs that depart from the paper's
  setup (the original procedure, another seed; ``departure_curves``) at the
  stage ends where the run without the departure was measured too: each
  one's test NLL and active units, and its paired difference from that run;
  the last column holds the paper's final NLL. Empty when there is none.
  """
  rows = []
  for (key, deps), curve in results_lib.departure_curves(results).items():
    curve = {e: v for e, v in curve.items() if e in paper.STAGE_ENDS}
    if not curve:
      continue
    name = curve_label(key.dataset, key.layers, key.latents, f'{key.objective.upper()} k = {key.k}')
    rows.append((f'{name}, {deps}: test NLL', {e: f'{r.nll:.2f}' for e, (r, _, _) in curve.items()},
                 _cell(paper.nll(key.dataset, key.objective, key.latents, key.k))))
    rows.append((f'{name}, {deps}: active units',
                 {e: '/'.join(map(str, r.active_units)) for e, (r, _, _) in curve.items()}, ''))
    rows.append((f'{name}: {deps} − paper setup, paired',
                 {e: f'{d:+.2f} ± {se:.2f}' for e, (_, d, se) in curve.items()}, ''))
  return _epoch_table(rows) if rows else ''


def headline_table(results):
  """Markdown table of the Table 1 cells measured after the paper's full
  budget (``paper.PAPER_EPOCHS``, the paper's setup, MNIST), each beside the
  paper's number, then the paired IWAE - VAE differences at equal k and
  against VAE k = 1 (``learning_curve_pairs``). Empty when none is measured.
  """
  final = paper.PAPER_EPOCHS
  curves = {key: {final: curve[final]} for key, curve in results_lib.learning_curves(results).items()
            if key.dataset == 'mnist' and final in curve}
  if not curves:
    return ''
  lines = ['| layers | objective | k | test NLL (ours) | paper | ours − paper |',
           '|---|---|---|---|---|---|']
  order = lambda key: (key.layers, key.k, key.objective != 'vae')  # noqa: E731
  for key in sorted(curves, key=order):
    r = curves[key][final]
    ref = paper.nll(key.dataset, key.objective, key.latents, key.k)
    lines.append(f'| {key.layers} | {key.objective.upper()} | {key.k} | {r.nll:.2f} ± {r.stderr:.2f} '
                 f'| {_cell(ref)} | {_cell(None if ref is None else r.nll - ref, "+.2f")} |')
  pairs = results_lib.learning_curve_pairs(curves)
  if pairs:
    lines += ['', '| layers | paired on the same test images | ours | paper |', '|---|---|---|---|']
    for (key, vae_k), paired in pairs.items():
      d, se = paired[final]
      lines.append(f'| {key.layers} | IWAE k = {key.k} − VAE k = {vae_k} | {d:+.2f} ± {se:.2f} '
                   f'| {_cell(paper.difference(key.dataset, key.latents, key.k, vae_k), "+.2f")} |')
  return '\n'.join(lines) + '\n'


BEGIN, END = '<!-- results-table:begin -->', '<!-- results-table:end -->'
CURVE_BEGIN, CURVE_END = '<!-- learning-curve:begin -->', '<!-- learning-curve:end -->'
DEPARTURE_BEGIN = '<!-- departure-curve:begin -->'
DEPARTURE_END = '<!-- departure-curve:end -->'
HEADLINE_BEGIN, HEADLINE_END = '<!-- headline:begin -->', '<!-- headline:end -->'
# The documents whose generated tables evaluate.py --table --write rewrites.
DOCUMENTS = ('README.md', os.path.join('docs', 'REPORT.md'))


def tables(all_results):
  """``{(begin, end): markdown}`` of every generated table, from ``read_results``."""
  all_results = list(all_results)
  return {(BEGIN, END): table(results_lib.newest(all_results)),
          (CURVE_BEGIN, CURVE_END): learning_curve_table(all_results),
          (DEPARTURE_BEGIN, DEPARTURE_END): departure_curve_table(all_results),
          (HEADLINE_BEGIN, HEADLINE_END): headline_table(all_results)}


def write_tables(all_results, documents):
  """Rewrites, in each document, every generated table whose markers it holds.

  Raises:
    TableError: a document holds no table's markers.
  """
  blocks = tables(all_results)
  for doc in documents:
    with open(doc) as f:
      text = f.read()
    found = [(b, e) for b, e in blocks if b in text and e in text]
    if not found:
      raise TableError(f'{doc}: holds no generated table (no {BEGIN} ... {END} block)')
    for begin, end in found:
      write_table(blocks[(begin, end)], doc, begin, end)


def write_table(markdown, readme, begin=BEGIN, end=END):
  """Replaces the block between the markers ``begin`` and ``end`` in ``readme``."""
  with open(readme) as f:
    text = f.read()
  if begin not in text or end not in text:
    raise TableError(f'{readme}: no {begin} ... {end} block to fill')
  head, rest = text.split(begin, 1)
  _, tail = rest.split(end, 1)
  tmp = readme + '.tmp'
  with open(tmp, 'w') as f:
    f.write(head + begin + '\n' + markdown + end + tail)
  os.replace(tmp, readme)
