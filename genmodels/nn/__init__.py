"""Building blocks that several families share: MLPs and conv trunks (nets), the U-Net (unet),
per-example noise keyed by the example's index (noise), the Gaussian diffusion process with its
schedules, targets and bound (diffusion) and its reverse chains (samplers), invertible layers
(flows), ODE integration with the instantaneous change of variables (ode), and optimal transport
(transport)."""
