"""Building blocks that several families share: MLPs and conv trunks (nets), the U-Net (unet),
per-example noise keyed by the example's index (noise), the Gaussian diffusion process with its
schedules and samplers (diffusion), invertible layers (flows), and ODE integration with the
instantaneous change of variables (ode)."""
