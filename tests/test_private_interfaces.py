"""The TensorFlow, TFP and Keras internals this package relies on, each used in
one function (named below); these tests fail loudly, naming the internal, when
an upgrade removes or changes one."""

import keras
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from iwae_tf import layers


def test_tensorflow_xla_context_query_exists():
  """layers.noise_alg: control_flow_util.GraphOrParentsInXlaContext."""
  from tensorflow.python.ops import control_flow_util  # pylint: disable=import-outside-toplevel
  assert callable(getattr(control_flow_util, 'GraphOrParentsInXlaContext', None)), (
      'tensorflow.python.ops.control_flow_util.GraphOrParentsInXlaContext is gone: '
      'layers.noise_alg must detect XLA contexts another way')
  seen = []
  tf.function(lambda: seen.append(layers.noise_alg()) or tf.constant(0), jit_compile=True)()
  tf.function(lambda: seen.append(layers.noise_alg()) or tf.constant(0), jit_compile=False)()
  assert seen == ['threefry', 'philox'], seen


def test_tfp_bernoulli_hooks_exist_and_are_used():
  """layers.BernoulliLogits: overrides tfd.Bernoulli._log_prob, reads
  _logits_parameter_no_checks."""
  assert callable(getattr(tfp.distributions.Bernoulli, '_logits_parameter_no_checks', None)), (
      'tfd.Bernoulli._logits_parameter_no_checks is gone: update layers.BernoulliLogits')
  calls = []

  class Spy(layers.BernoulliLogits):
    def _log_prob(self, event):
      calls.append(event)
      return super()._log_prob(event)

  d = Spy(logits=tf.constant([2.0, -1.0]), dtype=tf.float32)
  got = d.log_prob(tf.constant([1.0, 0.0]))
  assert calls, 'tfd.Bernoulli.log_prob no longer calls _log_prob: update layers.BernoulliLogits'
  tf.debugging.assert_near(got, -tf.math.softplus(-tf.constant([2.0, 1.0])))


def test_keras_model_records_its_distribution_strategy():
  """trainer.Trainer.make_train_function: keras.Model._distribute_strategy is
  None for a model built outside any strategy's scope."""
  plain = keras.Sequential([keras.layers.Dense(1)])
  assert hasattr(plain, '_distribute_strategy') and plain._distribute_strategy is None, (
      'keras.Model._distribute_strategy changed: update Trainer.make_train_function')
  with tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1']).scope():
    mirrored = keras.Sequential([keras.layers.Dense(1)])
  assert mirrored._distribute_strategy is not None


def test_keras_adam_keeps_its_second_moments_in_velocities():
  """training.OriginalAdam: keras.optimizers.Adam._velocities, one per variable,
  built from zeros, read by update_step."""
  from iwae_tf import training  # pylint: disable=import-outside-toplevel
  var = tf.Variable([1.0, 2.0])
  adam = keras.optimizers.Adam()
  adam.build([var])
  assert len(getattr(adam, '_velocities', [])) == 1, (
      'keras.optimizers.Adam._velocities changed: update training.OriginalAdam')
  assert adam._velocities[0].shape == var.shape and not adam._velocities[0].numpy().any()
  original = training.OriginalAdam()
  original.build([var])
  assert original._velocities[0].numpy().tolist() == [1.0, 1.0]
  original.apply([tf.constant([0.0, 0.0])], [var])  # a zero gradient: v = beta2 * 1
  assert original._velocities[0].numpy() == pytest.approx([0.999, 0.999]), (
      'Adam.update_step no longer reads _velocities: update training.OriginalAdam')


_COMPILE = ('import tensorflow as tf; '
            'print(tf.function(lambda x: tf.tanh(x) * 2.0, jit_compile=True)(tf.ones([64])).numpy()[0])')


def _compile_with(xla_flags):
  import os  # pylint: disable=import-outside-toplevel
  import subprocess  # pylint: disable=import-outside-toplevel
  import sys  # pylint: disable=import-outside-toplevel
  return subprocess.run([sys.executable, '-c', _COMPILE], capture_output=True, text=True,
                        timeout=120, env=dict(os.environ, XLA_FLAGS=xla_flags,
                                              TF_CPP_MIN_LOG_LEVEL='2'))


def test_xla_still_knows_the_vector_width_flag():
  """cli.configure_xla: XLA_FLAGS' --xla_cpu_prefer_vector_width. XLA stops a
  process whose XLA_FLAGS names a flag it does not know (the second run shows
  that this test would see it), so every entry point would fail."""
  from iwae_tf import cli  # pylint: disable=import-outside-toplevel
  ours = _compile_with(cli.VECTOR_WIDTH_FLAG)
  assert ours.returncode == 0 and ours.stdout.startswith('1.52'), (
      f'XLA no longer takes {cli.VECTOR_WIDTH_FLAG}: remove it from cli.configure_xla\n'
      + ours.stderr[-2000:])
  unknown = _compile_with('--xla_cpu_no_such_flag_for_this_test=1')
  assert unknown.returncode != 0 and 'no_such_flag' in unknown.stderr, unknown.stderr[-2000:]
