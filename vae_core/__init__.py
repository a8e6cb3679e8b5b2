"""vae_core: variational autoencoders in plain PyTorch (torch, numpy and the standard library only).

Configs, networks, the VAE, likelihoods, the ELBO and IWAE objectives, metrics, sampling,
training steps and save/load. No Ray, MLflow or pyarrow: infrastructure is applied to the model
from the outside (``vaepipe.pipeline``).
"""

from vae_core.config import ModelConfig, ObjectiveConfig, OptimConfig
from vae_core.distributions import DiagonalGaussian, standard_normal_log_prob
from vae_core.likelihoods import bernoulli_log_prob, gaussian_log_prob
from vae_core.metrics import active_units, latent_variances
from vae_core.model import VAE, VAEOutput
from vae_core.networks import build_decoder, build_encoder
from vae_core.objectives import (
    ElboTerms,
    SampledTerms,
    elbo,
    importance_sampled_nll,
    importance_sampled_terms,
    iwae_bound,
    kl_weight,
    negative_elbo,
    training_loss,
)
from vae_core.sampling import latent_traversal, reconstruct, sample_prior
from vae_core.serialization import load_model, save_model
from vae_core.training import build_optimizer, build_scheduler, train_step

__all__ = [
    "VAE",
    "DiagonalGaussian",
    "ElboTerms",
    "SampledTerms",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "VAEOutput",
    "active_units",
    "bernoulli_log_prob",
    "build_decoder",
    "build_encoder",
    "build_optimizer",
    "build_scheduler",
    "elbo",
    "gaussian_log_prob",
    "importance_sampled_nll",
    "importance_sampled_terms",
    "iwae_bound",
    "kl_weight",
    "latent_traversal",
    "latent_variances",
    "load_model",
    "negative_elbo",
    "reconstruct",
    "sample_prior",
    "save_model",
    "standard_normal_log_prob",
    "train_step",
    "training_loss",
]
