"""The probabilistic model of a VAE / IWAE: a Keras model that only does maths.

Generative model with L stochastic layers (bottom first, ``h_1`` nearest x):

    p(x, h_1..h_L) = p(h_L) p(h_{L-1}|h_L) ... p(h_1|h_2) p(x|h_1),
    p(h_L) = N(0, I), p(h_l|h_{l+1}) diagonal Gaussian, p(x|h_1) Bernoulli;

recognition model ``q(h_1..h_L|x) = q(h_1|x) q(h_2|h_1) ... q(h_L|h_{L-1})``.
The stochastic layers (``layers.py``) return TFP distributions. For ``k``
samples the log-weights are

    log w_i = log p(x, h^(i)) - log q(h^(i)|x),   h^(i) ~ q(.|x),

of shape ``[k, batch]`` (the package's axis convention: samples first).

Sampling is reparameterised, ``h_l = mu_l + sigma_l * eps_l``, and the noise
``eps`` is an input: ``draw_noise(k, batch, seed)`` draws it from a
stateless seed (one seed per layer, split from ``seed``), and ``encode`` /
``log_weights`` take it. The model therefore holds no random state and knows
nothing of optimisers, input pipelines, binarisation or devices: the trainer
(``trainer.py``) decides where the noise comes from, for instance drawing it
for a global batch and handing each replica its rows. The objectives
(``objectives.py``) turn log-weights into surrogates; the bounds live in
``bounds.py``.
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

from iwae_tf import bounds
from iwae_tf import layers

tfd = tfp.distributions


def layer_seeds(seed, n):
  """``n`` stateless seeds, one per stochastic layer (``seed`` itself if one)."""
  return [seed] if n == 1 else tfp.random.split_seed(seed, n=n)


class IWAEModel(keras.Model):
  """VAE/IWAE generative and recognition networks, any number of stochastic layers.

  The same model serves both objectives: what differs is how a trainer
  combines its log-weights (``objectives.py``).

  Args:
    config: a ``ModelConfig``.
    output_bias: optional ``[data_dim]`` initial logits of p(x|h_1).

  Every weight is created here, so checkpoints restore eagerly; the
  weights' paths (``'q_h1/mlp/dense_0/kernel'``) key the checkpoints.
  """

  def __init__(self, config, output_bias=None, **kwargs):
    super().__init__(**kwargs)
    self.config = config
    lat, hid = config.latents, config.hidden
    self.encoders = [layers.GaussianLayer(hid[i], lat[i], name=f'q_h{i + 1}')
                     for i in range(len(lat))]
    # decoders[0] is p(x|h_1); decoders[l] is p(h_l|h_{l+1}); hidden mirrored.
    self.decoders = [layers.BernoulliLayer(tuple(reversed(hid[0])), config.data_dim,
                                           bias=output_bias, name='p_x')]
    self.decoders += [layers.GaussianLayer(tuple(reversed(hid[i])), lat[i - 1],
                                           name=f'p_h{i}')
                      for i in range(1, len(lat))]
    self.prior = layers.standard_normal(lat[-1])
    x = tf.zeros([1, config.data_dim])
    self.log_weights(x, self.draw_noise(1, 1, tf.constant([0, 0], tf.int32)))
    self.built = True

  @property
  def encoder_variables(self):
    return [v for e in self.encoders for v in e.trainable_variables]

  @property
  def decoder_variables(self):
    return [v for d in self.decoders for v in d.trainable_variables]

  # -------------------------------------------------------------------- noise
  def draw_noise(self, k, batch, seed):
    """Standard normal noise for ``k`` latent paths of ``batch`` images.

    Args:
      k: samples per image.
      batch: images (an int or a scalar tensor).
      seed: stateless seed ``[2]``; layer ``l`` uses ``layer_seeds(seed, L)[l]``.

    Returns:
      list, bottom layer first, of ``[k, batch, d_l]``. Row ``b`` of every
      tensor belongs to image ``b``: a contiguous block of rows is the noise
      of those images.
    """
    seeds = layer_seeds(seed, len(self.encoders))
    return [layers.standard_normal_noise(tf.stack([k, batch, d]), s)
            for d, s in zip(self.config.latents, seeds)]

  # ---------------------------------------------------------------- inference
  def encode(self, x, noise, stop_q_params=False):
    """Latent paths from q for the given noise, scored under q.

    Args:
      x: ``[batch, D]`` binary float.
      noise: ``draw_noise``'s list of ``[k, batch, d_l]``.
      stop_q_params: evaluate ``log q`` with the distribution parameters'
        gradients stopped (the path derivative through the samples is kept).

    Returns:
      ``(hs, log_q)``: list of ``[k, batch, d_l]`` samples, bottom first, and
      ``[k, batch]`` ``log q(h|x)``.
    """
    hs, log_q, h = [], 0.0, x
    for encoder, eps in zip(self.encoders, noise):
      q = encoder(h)
      h = layers.reparameterize(q, eps)
      if stop_q_params:
        q = layers.stop_gradient_params(q)
      log_q += q.log_prob(h)
      hs.append(h)
    return hs, log_q

  def log_joint(self, x, hs):
    """``log p(x, h)`` for latent paths ``hs`` (each ``[..., batch, d_l]``).

    Returns:
      ``[..., batch]`` log joint.
    """
    log_p = self.prior.log_prob(hs[-1]) + self.decoders[0](hs[0]).log_prob(x)
    for l in range(1, len(hs)):
      log_p += self.decoders[l](hs[l]).log_prob(hs[l - 1])
    return log_p

  def log_weights(self, x, noise, stop_q_params=False):
    """``[k, batch]`` log importance weights ``log p(x,h) - log q(h|x)``.

    Args:
      x: ``[batch, D]`` binary float.
      noise: ``draw_noise``'s list of ``[k, batch, d_l]``.
      stop_q_params: see ``encode``.
    """
    hs, log_q = self.encode(x, noise, stop_q_params)
    return self.log_joint(x, hs) - log_q

  def posterior_means(self, x, seed, num_samples=1):
    """Per stochastic layer, ``E_q[h_l]`` estimated for each image.

    The first layer's mean is exact; deeper layers average the conditional
    mean over ``num_samples`` samples of the layer below.

    Returns:
      list of ``[batch, d_l]``.
    """
    noise = self.draw_noise(num_samples, tf.shape(x)[0], seed)
    means, h = [], x
    for l, (encoder, eps) in enumerate(zip(self.encoders, noise)):
      q = encoder(h)
      means.append(tf.reduce_mean(q.mean(), axis=0) if l else q.mean())
      h = layers.reparameterize(q, eps)
    return means

  # --------------------------------------------------------------- generation
  def sample_means(self, n, seed):
    """Ancestral samples from the model: ``h_L`` from the prior, each layer
    below from its conditional, and for x the Bernoulli means (the original
    code's ``samples.jpg`` shows these).

    Args:
      n: number of samples.
      seed: stateless seed ``[2]``; layer ``l`` uses ``layer_seeds(seed, L)[l]``.

    Returns:
      ``[n, D]`` pixel probabilities.
    """
    seeds = layer_seeds(tf.convert_to_tensor(seed, tf.int32), len(self.decoders))
    h = layers.standard_normal_noise(tf.stack([n, self.config.latents[-1]]), seeds[-1])
    for l in range(len(self.decoders) - 1, 0, -1):
      h = layers.reparameterize(self.decoders[l](h), layers.standard_normal_noise(
          tf.stack([n, self.config.latents[l - 1]]), seeds[l - 1]))
    return self.decoders[0](h).mean()

  # ------------------------------------------------------------------ pruning
  def prune(self, units):
    """Removes units from the model, in place, as the original code pruned
    inactive ones.

    Pruning unit ``u`` of layer ``l`` sets both its posterior and its prior
    (or conditional prior) to ``N(0, 1)`` and zeroes every weight that reads
    it, so its log-weight terms cancel exactly and it influences nothing: the
    model then has the same likelihood as one without the unit.

    Args:
      units: per stochastic layer (bottom first), the indices to remove.
    """
    num_layers = len(self.encoders)
    for l, dead in enumerate(units):
      if not len(dead):
        continue
      # q(h_l|.) := N(0, 1) for these units, and p(h_l|h_{l+1}) too (the top
      # layer's prior already is).
      heads = self.encoders[l].heads + (self.decoders[l + 1].heads if l + 1 < num_layers else [])
      for head in heads:
        kernel, bias = head.kernel.numpy(), head.bias.numpy()
        kernel[:, dead], bias[dead] = 0.0, 0.0
        head.kernel.assign(kernel)
        head.bias.assign(bias)
      # Nothing reads them: the decoder below and the encoder above.
      readers = self.decoders[l].readers + (
          self.encoders[l + 1].readers if l + 1 < num_layers else [])
      for layer in readers:
        kernel = layer.kernel.numpy()
        kernel[dead, :] = 0.0
        layer.kernel.assign(kernel)

  def call(self, x, k=1, seed=(0, 0)):
    """Per-image ``L_k`` (``[batch]``) for the noise of stateless ``seed``."""
    seed = tf.convert_to_tensor(seed, tf.int32)
    return bounds.iwae_bound(self.log_weights(x, self.draw_noise(k, tf.shape(x)[0], seed)))
