"""Building blocks that several families share: MLPs and conv trunks (nets), the U-Net (unet),
per-example noise keyed by the example's index (noise), and the Gaussian diffusion process with
its schedules and samplers (diffusion)."""
