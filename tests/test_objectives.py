"""Tests of the gradient estimators against independent computations."""

import numpy as np
import pytest
import tensorflow as tf

from iwae_tf import bounds
from iwae_tf import config
from iwae_tf import layers
from iwae_tf import objectives
from helpers import binary, log_weights, make_model, noise


def estimator(name, k=4, objective='iwae', groups=1, beta=0.5):
  return objectives.make(config.ObjectiveConfig(objective, k, name, groups, beta))


def grads_by_name(obj, m, x, seed):
  _, grads, variables = obj.gradients(m, x, noise(m, obj.samples, x, seed))
  return {v.path: g.numpy() for v, g in zip(variables, grads)}


def assert_same(a, b, names, **tol):
  for n in names:
    np.testing.assert_allclose(a[n], b[n], err_msg=n, **tol)


X = binary(3, 10, seed=1)
SEED = tf.constant([5, 6], tf.int32)


@pytest.fixture
def base():
  return make_model((2,), hidden=((8,),), data_dim=10)


def test_reported_bound_is_l_k_for_every_estimator(base):
  log_w = log_weights(base, X, 4, SEED)
  for est in ('iwae', 'stl', 'dreg', 'ciwae'):
    out = estimator(est)(base, X, noise(base, 4, X, SEED))
    np.testing.assert_allclose(out.bound, bounds.iwae_bound(log_w), rtol=1e-5, err_msg=est)
  out = estimator('miwae', k=2, groups=2)(base, X, noise(base, 4, X, SEED))
  groups = tf.reshape(log_w, [2, 2, 3])
  np.testing.assert_allclose(
      out.bound, (bounds.iwae_bound(groups[0]) + bounds.iwae_bound(groups[1])) / 2, rtol=1e-5)


def test_stl_is_the_reparameterised_gradient_minus_the_score_term(base):
  iwae = grads_by_name(estimator('iwae'), base, X, SEED)
  stl = grads_by_name(estimator('stl'), base, X, SEED)
  # Score term, written out: sum_i w~_i d/dphi log q_phi(z_i) at fixed z_i.
  with tf.GradientTape() as tape:
    hs, _ = base.encode(X, noise(base, 4, X, SEED))
    w = tf.stop_gradient(tf.nn.softmax(log_weights(base, X, 4, SEED), axis=0))
    q = base.encoders[0](X)
    score = tf.reduce_mean(tf.reduce_sum(w * q.log_prob(tf.stop_gradient(hs[0])), 0))
  enc = base.encoder_variables
  # dL_k/dphi = sum_i w~_i (path term_i - score term_i); the loss is -L_k, so
  # the IWAE loss gradient holds +score and STL's lacks it.
  for v, g in zip(enc, tape.gradient(score, enc)):
    np.testing.assert_allclose(stl[v.path], iwae[v.path] - g.numpy(), rtol=1e-4, atol=1e-5,
                               err_msg=v.path)
    assert not np.allclose(g.numpy(), 0)
  assert_same(stl, iwae, [v.path for v in base.decoder_variables], rtol=1e-5, atol=1e-6)


def test_dreg_matches_iwae_in_expectation_with_lower_variance(base):
  iwae, dreg = estimator('iwae', k=5), estimator('dreg', k=5)
  x = X[:1]
  enc = [v.path for v in base.encoder_variables]
  samples = {'iwae': [], 'dreg': []}
  for s in range(300):
    seed = tf.constant([s, 17], tf.int32)
    for name, m in (('iwae', iwae), ('dreg', dreg)):
      g = grads_by_name(m, base, x, seed)
      samples[name].append(np.concatenate([g[n].ravel() for n in enc]))
    if s == 0:  # decoders get the same (standard IWAE) gradient, sample by sample
      a, b = grads_by_name(iwae, base, x, seed), grads_by_name(dreg, base, x, seed)
      assert_same(a, b, [v.path for v in base.decoder_variables], rtol=1e-4, atol=1e-6)
  a, b = np.array(samples['iwae']), np.array(samples['dreg'])
  stderr = np.sqrt(a.var(0) / len(a) + b.var(0) / len(b))
  z = np.abs(a.mean(0) - b.mean(0)) / (stderr + 1e-12)
  assert np.mean(z < 3.5) > 0.97, np.sort(z)[-10:]   # unbiased: same mean
  assert np.median(b.var(0) / (a.var(0) + 1e-20)) < 0.9  # lower variance


def test_dreg_encoder_gradient_matches_its_explicit_formula(base):
  dreg = grads_by_name(estimator('dreg'), base, X, SEED)
  # sum_i w~_i^2 (d log w_i / dz_i)(dz_i / dphi), by the chain rule through z.
  with tf.GradientTape() as outer:
    hs, _ = base.encode(X, noise(base, 4, X, SEED))
    z = hs[0]
    with tf.GradientTape() as inner:
      inner.watch(z)
      zs = tf.identity(z)
      qs = layers.stop_gradient_params(base.encoders[0](X))
      log_w = base.log_joint(X, [zs]) - qs.log_prob(zs)
    dlogw_dz = tf.stop_gradient(inner.gradient(log_w, zs))  # [k, b, d]
    w2 = tf.stop_gradient(tf.square(tf.nn.softmax(log_w, axis=0)))
    surrogate = tf.reduce_sum(w2[..., None] * dlogw_dz * z) / 3.0
  enc = base.encoder_variables
  for v, g in zip(enc, outer.gradient(surrogate, enc)):
    np.testing.assert_allclose(dreg[v.path], -g.numpy(), rtol=1e-4, atol=1e-5, err_msg=v.path)


def test_ciwae_endpoints(base):
  vae = grads_by_name(estimator('iwae', objective='vae'), base, X, SEED)
  iwae = grads_by_name(estimator('iwae'), base, X, SEED)
  names = [v.path for v in base.trainable_variables]
  assert_same(grads_by_name(estimator('ciwae', beta=1.0), base, X, SEED), vae, names,
              rtol=1e-4, atol=1e-6)
  assert_same(grads_by_name(estimator('ciwae', beta=0.0), base, X, SEED), iwae, names,
              rtol=1e-4, atol=1e-6)
  half = grads_by_name(estimator('ciwae', beta=0.5), base, X, SEED)
  for n in names:
    np.testing.assert_allclose(half[n], (vae[n] + iwae[n]) / 2, rtol=1e-4, atol=1e-6)


def test_miwae_and_piwae(base):
  names_dec = [v.path for v in base.decoder_variables]
  names_enc = [v.path for v in base.encoder_variables]
  miwae = grads_by_name(estimator('miwae', k=3, groups=2), base, X, SEED)
  piwae = grads_by_name(estimator('piwae', k=3, groups=2), base, X, SEED)
  iwae6 = grads_by_name(estimator('iwae', k=6), base, X, SEED)
  # PIWAE: decoder as IWAE over all 6 samples, encoder as MIWAE(2, 3).
  assert_same(piwae, iwae6, names_dec, rtol=1e-4, atol=1e-6)
  assert_same(piwae, miwae, names_enc, rtol=1e-4, atol=1e-6)
  assert any(not np.allclose(miwae[n], iwae6[n], atol=1e-6) for n in names_enc)
  # MIWAE with one group is IWAE.
  assert_same(grads_by_name(estimator('miwae', k=6, groups=1), base, X, SEED),
              iwae6, names_dec + names_enc, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('kwargs,message', [
    (dict(name='vae', estimator='dreg'), 'needs --objective=iwae'),
    (dict(estimator='iwae', groups=3), 'miwae or piwae'),
    (dict(estimator='ciwae', beta=1.5), 'beta'),
    (dict(estimator='nope'), 'unknown estimator')])
def test_bad_estimator_configs(kwargs, message):
  with pytest.raises(config.ConfigError, match=message):
    config.ObjectiveConfig(**kwargs)


def test_gradient_snr_matches_numpy(base):
  from iwae_tf import metrics
  m = estimator('iwae', k=3)
  snr = metrics.gradient_snr(base, m, X.numpy(), num_draws=20, seed=4, jit_compile=False)
  enc_paths = {v.path for v in base.encoder_variables}
  g_enc, g_dec = [], []
  for i in range(20):
    seed = tf.random.experimental.stateless_fold_in(tf.constant([4, 2], tf.int32), i)
    g = grads_by_name(m, base, X, seed)
    g_enc.append(np.concatenate([g[n].ravel() for n in g if n in enc_paths]))
    g_dec.append(np.concatenate([g[n].ravel() for n in g if n not in enc_paths]))
  for name, gs in (('encoder', g_enc), ('decoder', g_dec)):
    gs = np.array(gs, np.float64)
    keep = gs.std(0) > 0
    expect = np.mean(np.abs(gs.mean(0)[keep]) / gs.std(0)[keep])
    np.testing.assert_allclose(snr[name], expect, rtol=1e-4)


def test_every_configurable_estimator_has_a_class_and_no_other():
  """config.ESTIMATORS (names, help, rules) and objectives.ESTIMATORS (the
  classes) describe the same (objective, estimator) pairs; every pair builds."""
  allowed = {(o, e) for e, info in config.ESTIMATORS.items() for o in info.objectives}
  implemented = {(o, e) for o, table in objectives.ESTIMATORS.items() for e in table}
  assert allowed == implemented
  assert set(objectives.ESTIMATORS) == set(config.OBJECTIVES)
  for o, e in sorted(allowed):
    groups = 2 if config.ESTIMATORS[e].groups else 1
    assert isinstance(objectives.make(config.ObjectiveConfig(o, 3, e, groups)), objectives.Objective)
