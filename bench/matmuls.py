"""The matrix products of a workload, alone, in one compiled loop: the yardstick.

A benchmark's ratio is (time of the real work) / (time of just its matrix
products, with the same shapes and count, run in one XLA-compiled loop in the
same process), so that the noisy shared machine cancels out.

The products are chained as in the network (each output feeds the next
product, the backward pass uses every activation) and every result reaches
the loop's state, so that XLA can neither drop nor shrink any of them (it
would, for instance, turn ``dot(a, b)[0, 0]`` into a single dot product).
"""

import time

import tensorflow as tf


def matmul_loop(chains, iterations, backward, jit_compile=True):
  """Builds a compiled function running ``iterations`` rounds of ``chains``.

  Args:
    chains: list of ``(rows, dims, first_input_grad)``: a chain of products
      ``[rows, dims[0]] x [dims[0], dims[1]] x ... `` (an MLP without its
      nonlinearities). With ``backward``, each product also gets its weight
      gradient ``[d_in, rows] x [rows, d_out]`` and its input gradient
      ``[rows, d_out] x [d_out, d_in]`` (for the first product only where
      ``first_input_grad``).
    iterations: rounds (e.g. training steps, or evaluation chunks).
    backward: include the backward products.
    jit_compile: compile with XLA (else TensorFlow's own kernels run the loop).

  Returns:
    A zero-argument compiled function; call it once to compile.
  """
  weights = [[tf.Variable(tf.random.normal([i, o], stddev=1.0 / i**0.5))
              for i, o in zip(dims[:-1], dims[1:])] for _, dims, _ in chains]
  inputs = [tf.random.normal([rows, dims[0]]) for rows, dims, _ in chains]
  grads = [tf.random.normal([rows, dims[-1]]) for rows, dims, _ in chains]

  @tf.function(jit_compile=jit_compile)
  def run():
    def body(t, acc):
      for (_, _, first_input_grad), ws, x, g in zip(chains, weights, inputs, grads):
        hs = [x + acc]  # depend on the previous round, so nothing is hoisted
        for w in ws:
          hs.append(tf.matmul(hs[-1], w) + acc)
        acc = acc + 1e-9 * tf.reduce_max(hs[-1])
        if backward:
          g = g + acc
          for l in reversed(range(len(ws))):
            gw = tf.matmul(hs[l], g, transpose_a=True)
            if l or first_input_grad:
              g = tf.matmul(g, ws[l], transpose_b=True) + acc
            ws[l].assign_sub(1e-9 * gw)
          acc = acc + 1e-9 * tf.reduce_max(g)
      return t + 1, acc
    return tf.while_loop(lambda t, _: t < iterations, body, (0, 0.0))[1]

  return run


BATCH = 20  # the paper's minibatch


def step_products(k, batch=BATCH):
  """One training step's products: the 784-200-200-(50+50) encoder on the
  batch (no gradient w.r.t. the data) and the 50-200-200-784 decoder on the
  k samples of each image (its input gradient flows back to the encoder)."""
  return [(batch, [784, 200, 200, 100], False), (k * batch, [50, 200, 200, 784], True)]


def best_time(fn, repeats):
  """The shortest of ``repeats`` wall-clock timings of ``fn()`` (the machine is shared)."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return min(times)
