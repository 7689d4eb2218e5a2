"""The switches for the split (configs.py: objective sum, decoder, consistency): each does what
its comment says, and each default leaves the original design's system as it was."""
import contextlib
import copy
import json

import pytest
import torch

import configs
import train
from configs import GROUPS
from conftest import calibrated_trainer, differing, snapshot, violate_evaluations
from losses import draw_step, evaluate_goals, forward_measures, real_stats
from models import VAE, Discriminator, ModulatedDecoder, frozen_batchnorm_stats

X = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(5))


def tiny(*switches):
    return configs.parse_args(["--preset", "tiny", *switches])


# --- objective = sum: the control for what the min-barrier adds ------------------------------
def twin(trainer, objective):
    other = train.Trainer(dataclass_with(trainer.cfg, objective=objective), trainer.device)
    other.load_state_dict(copy.deepcopy(trainer.state_dict(2)))
    other.goals = copy.deepcopy(trainer.goals)
    return other


def dataclass_with(cfg, **changes):
    cfg = copy.deepcopy(cfg)
    for name, value in changes.items():
        setattr(cfg, name, value)
    return cfg


def step(trainer, monkeypatch):
    with monkeypatch.context() as patch:
        violate_evaluations(patch.setattr, (), others_pass=True)  # the guard accepts
        torch.manual_seed(11)
        trainer.lbo_step(X, train.EpochStats(), "here", print)


def test_the_sum_objective_steps_on_the_mean_over_groups_of_minus_log_score(calibrated,
                                                                           monkeypatch):
    calibrated.lbo_batches = 2  # an odd step next: no discriminator update
    ours, barrier = twin(calibrated, "sum"), twin(calibrated, "lbo")
    reference = twin(calibrated, "sum")
    torch.manual_seed(11)
    _, _, fwd = reference._forward(X)
    evaluation = evaluate_goals(reference.goals, fwd.measures)
    loss = -torch.stack([torch.stack([evaluation.log_scores[g["name"]]
                                      for g in reference.goals if g["group"] == group]).mean()
                         for group in GROUPS]).mean()
    reference.opt.zero_grad(set_to_none=True)
    loss.backward()
    reference.opt.step()
    step(ours, monkeypatch)
    step(barrier, monkeypatch)
    assert differing(snapshot(ours), snapshot(reference)) == []
    # ...and the test can tell the two objectives apart.
    assert differing(snapshot(barrier), snapshot(reference))


def test_the_sum_objective_keeps_calibration_guard_and_tightener(tmp_path):
    assert train.main(["--preset", "tiny", "--objective", "sum", "--epochs", "2",
                       "--output_dir", str(tmp_path)]) == 0
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["objective"] == "sum" and last["decision"] != "none (elbo control)"
    assert last["accepted"] > 0 and "bottleneck" in last


# --- the asymmetric decoder -------------------------------------------------------------------
def asymmetric_vae():
    torch.manual_seed(0)
    vae = VAE(tiny("--decoder", "asymmetric")).eval()
    with torch.no_grad():
        for film in vae.decoder.films:
            film.weight.normal_(0, 0.5)
    return vae


def test_the_asymmetric_decoder_makes_its_map_from_core_and_lets_detail_only_modulate():
    vae = asymmetric_vae()
    assert isinstance(vae.decoder, ModulatedDecoder)
    core = torch.randn(4, vae.core_dim)
    detail_a, detail_b = torch.randn(2, 4, vae.latent_dim - vae.core_dim)
    with torch.no_grad():
        a = vae.decode(core, detail_a)
        b = vae.decode(core, detail_b)
        assert (a - b).abs().max() > 1e-3  # detail does change the image...
        for film in vae.decoder.films:
            film.weight.zero_()
        a = vae.decode(core, detail_a)
        b = vae.decode(core, detail_b)
    assert torch.equal(a, b)  # ...through the per-channel modulation alone
    assert a.shape == (4, 3, 32, 32) and 0 <= a.min() and a.max() <= 1


def test_the_asymmetric_decoder_modulates_every_position_of_a_channel_alike():
    """Detail gives the first stage no map of its own: with the same core, its
    pre-activation under detail b is, channel by channel, one affine map (the same at every
    position) of the one under detail a."""
    vae = asymmetric_vae()
    inputs = []
    # Before the (in-place) activation: what the stage hands it.
    vae.decoder.act.register_forward_pre_hook(lambda module, args: inputs.append(args[0].clone()))
    core = torch.randn(1, vae.core_dim).repeat(2, 1)
    detail = torch.randn(2, vae.latent_dim - vae.core_dim)
    with torch.no_grad():
        vae.decode(core, detail)
    a, b = (t.flatten(1) for t in inputs[0])  # every stage's, the first stage's first
    centred = a - a.mean(1, keepdim=True)
    slope = (centred * (b - b.mean(1, keepdim=True))).sum(1) / centred.pow(2).sum(1)
    fitted = b.mean(1, keepdim=True) + slope[:, None] * centred
    assert torch.allclose(fitted, b, atol=1e-4)
    assert not torch.allclose(slope, torch.ones_like(slope), atol=1e-3)  # it did modulate


def test_the_asymmetric_decoder_trains_through_the_guard_and_the_joint_decode(tmp_path):
    assert train.main(["--preset", "tiny", "--decoder", "asymmetric", "--epochs", "2",
                       "--output_dir", str(tmp_path)]) == 0
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert any(k.startswith("decoder.films.") for k in state["vae"])
    assert (tmp_path / "cross_reconstruction.png").exists()


# --- consistency = split: each code unchanged by what the other carries ------------------------
def test_split_consistency_encodes_jittered_images_for_core_and_flipped_ones_for_detail():
    cfg = tiny("--consistency", "split")
    x = torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(3)
    draws = draw_step(x, cfg)
    jittered, flipped = draws.augmented.chunk(2)
    # Detail's images are x itself, flipped left-right and/or upside down (all four kinds).
    kinds = [next(k for k, f in enumerate((lambda v: v, lambda v: v.flip(2),
                                           lambda v: v.flip(1), lambda v: v.flip(1, 2)))
                  if torch.equal(f(v), w)) for v, w in zip(x, flipped)]
    assert set(kinds) == {0, 1, 2, 3}
    # Core's are colour-jittered, never flipped: closer to x than to its mirror image.
    assert not torch.equal(jittered, x)
    to_x, to_mirror = ((jittered - t).abs().mean((1, 2, 3)) for t in (x, x.flip(3)))
    assert (to_x < to_mirror).all()
    # consistency = core: one batch for core, about half of it flipped left-right.
    torch.manual_seed(3)
    spec = draw_step(x, tiny()).augmented
    to_x, to_mirror = ((spec - t).abs().mean((1, 2, 3)) for t in (x, x.flip(3)))
    assert len(spec) == len(x) and 10 < int((to_mirror < to_x).sum()) < 54


def expressive_nets(*switches):
    cfg = tiny(*switches)
    torch.manual_seed(0)
    vae = VAE(cfg)
    with torch.no_grad():  # an expressive encoder, not the collapsed one of the init
        vae.encoder.mu.weight.normal_(0, 0.5)
    disc = Discriminator(cfg.disc_channels).eval()
    return cfg, (vae, disc, lambda images: images)


def consistency_measures_and_codes():
    """The step's measures with consistency = split, and mu of x and of its variants written
    out (x, then both kinds of variant in one frozen pass), for expressive nets. Also returns
    core_dim."""
    cfg, nets = expressive_nets("--consistency", "split")
    vae = nets[0]
    torch.manual_seed(1)
    draws = draw_step(X, cfg)
    real = real_stats(X, nets[2], contextlib.nullcontext)
    before = copy.deepcopy(vae.state_dict())
    m = forward_measures(nets, X, real, draws, contextlib.nullcontext).measures
    vae.load_state_dict(before)
    with torch.no_grad():
        mu = vae.posterior(X).mu
        with frozen_batchnorm_stats(vae):
            mu_variants = vae.posterior(draws.augmented).mu
    return m, mu, mu_variants, cfg.core_dim


def test_detail_consistency_compares_mu_detail_of_x_and_of_its_flips():
    m, mu, mu_variants, c = consistency_measures_and_codes()
    b = len(X)

    def mse(a, v):
        return torch.nn.functional.mse_loss(a, v).item()
    assert m["detail_consistency"].item() == pytest.approx(
        mse(mu[:, c:], mu_variants[b:, c:]), rel=1e-4)
    assert m["core_consistency"].item() == pytest.approx(
        mse(mu[:, :c], mu_variants[:b, :c]), rel=1e-4)
    assert m["detail_consistency"].item() != pytest.approx(
        mse(mu[:, c:], mu_variants[:b, c:]), rel=0.01)


def test_detail_consistency_is_a_latent_goal_calibrated_like_core_consistency(tiny_cfg):
    trainer = calibrated_trainer(dataclass_with(tiny_cfg, consistency="split"))
    goal, = [g for g in trainer.goals if g["name"] == "detail_consistency"]
    assert goal["group"] == "latent" and isinstance(goal["scale"], float) and goal["scale"] > 0
    assert "detail_consistency" not in [g["name"] for g in configs.goal_table(tiny())]
    assert "detail_consistency" not in [g["name"] for g in configs.goal_table(
        tiny("--consistency", "split", "--drop_groups", "latent"))]


def test_every_split_switch_defaults_to_the_seed_system():
    cfg = configs.Config()
    assert (cfg.objective, cfg.decoder, cfg.consistency, cfg.lbo_grad_clip) == (
        "lbo", "standard", "core", 0.0)
    assert configs.goal_table(cfg) == cfg.goals
