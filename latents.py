"""A trained VAE's latent means of many images, and the decodes of many latents, batch by batch
on the model's device: what the factor probes, the face probes and the drawn-shapes test feed
on. Each returns its result on the CPU.
"""
import numpy as np
import torch

ENCODE_BATCH = 256         # images (or latents) per network call


def encode_means(vae, x, device, amp):
    """(N, D) numpy latent means (the posterior's mu) of one batch of images."""
    with amp():
        return vae.posterior(x.to(device)).mu.cpu().numpy()


def encode_rows(vae, images, rows, device, amp):
    """(len(rows), D) float64 latent means of images(rows), ENCODE_BATCH rows at a time."""
    return np.concatenate([encode_means(vae, images(rows[i:i + ENCODE_BATCH]), device, amp)
                           for i in range(0, len(rows), ENCODE_BATCH)]).astype(np.float64)


def decode_latents(vae, z, device, amp):
    """The images decoded from every latent in z (N, D), ENCODE_BATCH at a time."""
    with amp():
        return torch.cat([vae.decode_latent(batch.to(device)).cpu()
                          for batch in z.split(ENCODE_BATCH)])
