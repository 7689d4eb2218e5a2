"""Every hyperparameter of BOM VAE v15, in one place.

Edit the defaults below, or override any field from the command line:

    python train.py --epochs 3 --batch_size=64 --output_dir runs/a
    python train.py --preset demo            # built-in dataset, small model, CPU-friendly

A preset is applied first, then the individual overrides, in order.
"""
import copy
import dataclasses
import difflib
import math
from dataclasses import dataclass, field

# A group is *violated* when the product of its goal scores would be 0 in float32, i.e. when the
# sum of their log-scores falls below the log of the smallest normal float32 (about -87.34).
# The barrier works on log-scores, so this threshold does not depend on the precision in use.
LOG_SCORE_FLOOR = math.log(2.0 ** -126)

# BOX score: 1 at the centre, BOX_WALL_SCORE at the walls (falling quadratically with the
# distance from the centre), then an exponential tail outside: exp(-BOX_STEEPNESS * overshoot),
# overshoot measured in half-widths. Continuous at the walls and monotone in the distance.
BOX_WALL_SCORE = 0.5
BOX_STEEPNESS = 20.0

# A latent dim is *active* when the batch variance of its mu exceeds this (the `weak` goal and
# the active-dims count of the epoch summary).
ACTIVE_VARIANCE = 0.1

GROUPS = ("recon", "core", "swap", "realism", "disentangle", "latent", "health")

# Parameters each goal type takes. A MINIMIZE_* scale may be "auto": calibration sets it.
GOAL_TYPES = {
    "MINIMIZE_SOFT": ("scale",),
    "MINIMIZE_HARD": ("scale",),
    "LOWER": ("margin",),
    "UPPER": ("margin",),
    "BOX": ("lower", "upper"),
    "BOX_ASYMMETRIC": ("lower", "upper", "healthy"),
    "AT_MOST": ("upper",),
}


def _goal(name, group, kind, **params):
    return dict(name=name, group=group, type=kind, **params)


def default_goals():
    """The goal table (docs/design.md). `name` is the raw measure the goal scores (losses.py)."""
    soft = "MINIMIZE_SOFT"
    return [
        _goal("pixel", "recon", soft, scale="auto"),
        _goal("edge", "recon", soft, scale="auto"),
        _goal("perceptual", "recon", soft, scale="auto"),
        _goal("core_mse", "core", soft, scale="auto"),
        _goal("core_edge", "core", soft, scale="auto"),
        _goal("swap_structure", "swap", soft, scale="auto"),
        _goal("swap_appearance", "swap", soft, scale="auto"),
        _goal("swap_color_hist", "swap", soft, scale="auto"),
        _goal("realism_recon", "realism", soft, scale="auto"),
        _goal("realism_swap", "realism", soft, scale="auto"),
        _goal("core_color_leak", "disentangle", soft, scale="auto"),
        _goal("detail_edge_leak", "disentangle", soft, scale="auto"),
        _goal("kl_core", "latent", "LOWER", margin=1.0),
        _goal("kl_detail", "latent", "LOWER", margin=1.0),
        # A ceiling on KL per dim: the earlier system only had lower bounds and KL grew without
        # limit. AT_MOST scores 1 anywhere below the ceiling, so it bounds KL without pulling
        # it anywhere; a centred BOX on [0, 10] pulled it toward 5 nats/dim, and each
        # tightening narrowed that box around 5.
        _goal("kl_core_dim", "latent", "AT_MOST", upper=10.0),
        _goal("kl_detail_dim", "latent", "AT_MOST", upper=10.0),
        _goal("logvar_core", "latent", "BOX", lower=-15.0, upper=10.0),
        _goal("logvar_detail", "latent", "BOX", lower=-15.0, upper=10.0),
        _goal("cov", "latent", soft, scale="auto"),
        _goal("core_consistency", "latent", soft, scale="auto"),
        _goal("weak", "latent", soft, scale=0.1),
        _goal("detail_mean", "latent", "BOX", lower=-15.0, upper=15.0),
        # The variance goals keep the original design's ranges but peak at 1, the prior's
        # variance, not at the range's centre, which each tightening would raise past every
        # realistic variance (docs/design.md, "Variance goals peak at the prior's variance").
        _goal("detail_var_mean", "latent", "BOX_ASYMMETRIC", lower=0.0, upper=350.0,
              healthy=1.0),
        _goal("detail_cov", "latent", soft, scale=1.0),
        _goal("detail_ratio", "health", "BOX", lower=0.0, upper=0.70),
        _goal("core_var_health", "health", "BOX_ASYMMETRIC", lower=0.0, upper=300.0,
              healthy=1.0),
        _goal("detail_var_health", "health", "BOX_ASYMMETRIC", lower=0.0, upper=300.0,
              healthy=1.0),
        _goal("core_var_max", "health", soft, scale=100.0),
        _goal("detail_var_max", "health", soft, scale=100.0),
    ]


@dataclass
class Config:
    # --- data ---
    dataset: str = "auto"            # auto (CelebA if set up) | celeba | folder | synthetic
                                     # (the built-in shapes) | synthetic_sparse (small shapes
                                     # on black) | a benchmark (docs/benchmarks.md)
    data_dir: str = "data/celeba"    # CelebA root (celeba_setup.py), or any image folder
    image_size: int = 64             # side of the square images, in pixels (a multiple of 16)
    synthetic_size: int = 20000      # images per epoch of the built-in procedural dataset
    heldout_size: int = 1000         # held-out images for evaluation when there is no test split
    factors: str = ""                # --dataset folder: a CSV of each image's factors, marked
                                     # structure or appearance (docs/benchmarks.md)
    num_workers: int = 2             # data-loader worker processes
    # --- model ---
    latent_dim: int = 128            # latent dims in all, core and detail together
    core_dim: int = 16               # the rest (latent_dim - core_dim) is detail
    enc_channels: tuple = (64, 128, 256, 512)  # the encoder's four stride-2 stages
    dec_channels: tuple = (256, 128, 64, 32)   # the decoder's four upsampling stages
    disc_channels: tuple = (64, 128, 256, 512)  # the PatchGAN's four stride-2 stages
    # standard: one linear layer from the whole latent to the decoder's first map.
    # asymmetric: core alone makes the spatial map; detail only scales and shifts each
    # upsampling stage's channels (FiLM), so it cannot say where things are
    decoder: str = "standard"
    perceptual: str = "vgg16"        # vgg16 (ImageNet weights) | random (untrained, no download)
    vgg_weights: str = ""            # local VGG16 state-dict file; empty = torchvision's download
    # --- objective ---
    # lbo: -log(min_g S_g), the method. The controls keep its goals, calibration, guard and
    # tightener and change only how the groups' l_g = -log S_g make the loss: sum, their mean;
    # smooth_max, mu log sum exp(l_g / mu), between the two (smooth Tchebycheff); multipliers,
    # the sum with each group also a constraint, weighed up by its multiplier while it is
    # violated (GECO-style). elbo: a plain beta-VAE, same nets
    objective: str = "lbo"
    beta: float = 1.0                # KL weight of the elbo objective
    smooth_max_temperature: float = 0.1  # mu of smooth_max, in nats of l_g: small = the min
    multiplier_target: float = 0.5   # multipliers: the score each group is held to (S_g >= it)
    multiplier_rate: float = 0.01    # multipliers: lambda += rate x averaged violation (>= 0)
    elbo_sigma: float = 0.1          # elbo: the per-pixel std of its Gaussian likelihood
    control_measure_every: int = 8  # elbo: log LBO's measures (a no-gradient forward) every N steps
    # What the realism goals measure with the discriminator. features: the distance from
    # real images in its features. score: 1 - mean sigmoid(D(image)), the original design's measure
    # (docs/design.md, "Realism")
    realism: str = "features"
    # What each code is asked to be invariant to (docs/design.md, "The split").
    # core: core alone, unchanged by a random h-flip and colour jitter (the original design's goal).
    # split: core unchanged by colour jitter, detail unchanged by h- and v-flips
    consistency: str = "core"
    drop_groups: str = ""            # ablations: comma-separated goal groups left out of the
                                     # barrier (their goals are not scored), e.g. "realism"
    # --- optimisation ---
    epochs: int = 35                 # maximum; the tightener may stop earlier
    batch_size: int = 256            # L4 24 GB; 128 if out of memory; 512 on an A100
    lr: float = 1e-3                 # the VAE's AdamW, annealed as lr_schedule says
    weight_decay: float = 1e-5       # the VAE's AdamW weight decay
    disc_lr: float = 1e-4            # the discriminator's AdamW, annealed likewise
    min_lr: float = 1e-5             # cosine annealing floor, both optimizers
    lr_schedule: str = "cosine"      # cosine: both rates fall to min_lr at the last epoch;
                                     # constant: each stays at lr / disc_lr
    calibration_batches: int = 200   # epoch 1: plain-MSE warm-up whose measures set "auto" scales
    calibration_grad_clip: float = 1.0  # the VAE's gradient-norm clip in the warm-up
    lbo_grad_clip: float = 0.0       # the VAE's gradient-norm clip on LBO steps; 0 = none
    disc_grad_clip: float = 1.0      # the discriminator's gradient-norm clip
    disc_every: int = 2              # discriminator update every N batches after calibration
    noise_std: float = 0.5           # perturbation of the leak goals
    max_consecutive_rejections: int = 200  # stop with a diagnosis instead of looping
    # How the rollback guard checks an update. look-ahead: a second forward of the same batch
    # with the new weights. next-batch: the next batch's forward, which the step needs anyway
    # (faster; judges an update on other images: docs/speed.md, "A faster guard")
    guard_check: str = "look-ahead"
    # --- adaptive tightening (docs/design.md, "The method in a page") ---
    tighten_start_epoch: int = 5     # the first epoch whose end may tighten the goals
    tighten_rate: float = 0.05       # scales x(1 - rate), BOX half-widths x(1 - rate/2)
    target_rollback_rate: float = 0.05  # refusal rate at which the goals hold; stop 1 epoch on
    backoff_rollback_rate: float = 0.50  # a tightening that pushes the rate above it is undone
    backoff_factor: float = 0.5      # the gentler rate after a back-off is rate * factor
    # --- run ---
    output_dir: str = "outputs_bom_v15"  # checkpoint, logs, metrics and pictures go here
    device: str = "auto"             # auto | cpu | cuda | cuda:N
    amp: bool = True                 # bf16 autocast for the networks on GPUs with native bf16
                                     # (A100, L4, H100); float32 elsewhere (T4, CPU)
    channels_last: bool = True       # NHWC memory format for the networks and batches
    compile: bool = False            # torch.compile the networks (the first steps compile)
    seed: int = 0                    # seed of every random draw
    eval_images: int = 10000         # held-out images for MSE, PSNR and SSIM
    epoch_eval_images: int = 256     # held-out images measured after every epoch (0 = none)
    fid_images: int = 0              # LPIPS/FID images; 0 = 10,000 on a GPU, 1,000 on a CPU
    probe_images: int = 2500         # datasets with factors: images for the factor probes,
                                     # MIG, DCI and SAP (80 % fit)
    # FactorVAE score (datasets whose factors can be sampled): majority-vote training and
    # evaluation votes, images for the per-dim variances, images per vote (0 votes: skip it).
    # Far fewer than disentanglement_lib's 10000 / 5000 / 10000 / 64, to fit a CPU
    factor_vae_train: int = 300
    factor_vae_eval: int = 150
    factor_vae_variance: int = 2000
    factor_vae_batch: int = 64
    dci_trees: int = 100             # DCI's gradient-boosted trees per factor
    face_probe_images: int = 20000   # CelebA: test-partition images for the landmark and
                                     # attribute probes (the partition has 19,962)
    tensorboard: bool = True         # TensorBoard scalars and images, when it is installed
    log_every: int = 50              # per-step TensorBoard scalars every N LBO steps
    resume: str = ""                 # "" = fresh run; "latest" (or bare --resume) = the
                                     # output folder's checkpoint.pt; or a checkpoint path
    goals: list = field(default_factory=default_goals)  # the goal table: default_goals() above

    @property
    def detail_dim(self):
        return self.latent_dim - self.core_dim


PRESETS = {
    # The built-in dataset and a small model: the whole pipeline in minutes on a laptop CPU,
    # with the switches that split the built-in shapes best (docs/design.md, "The split").
    "demo": dict(
        dataset="synthetic", image_size=32, synthetic_size=4096, heldout_size=256,
        num_workers=0, latent_dim=32, core_dim=8,
        enc_channels=(16, 32, 64, 128), dec_channels=(64, 32, 16, 16),
        disc_channels=(16, 32, 64, 64), perceptual="random",
        consistency="split", decoder="asymmetric", lbo_grad_clip=5.0,
        # Tightening from epoch 2 at x0.6 an epoch reaches the 5 % refusal rate and the early
        # stop within minutes; the default (x0.95 from epoch 5) needs hours.
        epochs=12, batch_size=64, calibration_batches=24,
        tighten_start_epoch=2, tighten_rate=0.4,
        output_dir="outputs_demo", eval_images=256, dci_trees=20,
    ),
    # The smallest model that exercises every code path; used by the tests.
    "tiny": dict(
        dataset="synthetic", synthetic_size=64, heldout_size=32, num_workers=0,
        image_size=32, latent_dim=12, core_dim=4,
        enc_channels=(8, 8, 16, 16), dec_channels=(16, 8, 8, 8),
        disc_channels=(8, 8, 16, 16), perceptual="random",
        epochs=2, batch_size=8, calibration_batches=4,
        tighten_start_epoch=1, output_dir="outputs_tiny", eval_images=32, probe_images=200,
        dci_trees=5,
    ),
}

# study.py's runs: the demo's networks, images and batches with the default decoder,
# consistency goals, unclipped LBO step and tightening schedule, for 8 epochs (about 5
# minutes a run on a 2-core CPU); each study variant changes what it names from there.
PRESETS["study"] = dict(PRESETS["demo"], consistency="core", decoder="standard",
                        lbo_grad_clip=0.0, epochs=8, tighten_start_epoch=5, tighten_rate=0.05,
                        output_dir="outputs_study")

# Settings of the run rather than of the experiment: a resumed run may change them. `compile`
# is among them so that a run can resume where compiling fails, at the cost of bit-exactness
# (compiled kernels round differently); channels_last and amp change the numbers too, and are
# part of the experiment.
RUN_ONLY_FIELDS = ("output_dir", "device", "num_workers", "eval_images", "epoch_eval_images",
                   "fid_images", "probe_images", "resume", "max_consecutive_rejections",
                   "tensorboard", "log_every", "control_measure_every", "compile", "factors",
                   "factor_vae_train", "factor_vae_eval", "factor_vae_variance",
                   "factor_vae_batch", "face_probe_images", "dci_trees")

CHOICES = {
    "objective": ("lbo", "sum", "smooth_max", "multipliers", "elbo"),
    "decoder": ("standard", "asymmetric"),
    "consistency": ("core", "split"),
    "dataset": ("auto", "celeba", "folder", "synthetic", "synthetic_sparse", "shapes3d", "mpi3d",
                "dsprites"),
    "perceptual": ("vgg16", "random"),
    "guard_check": ("look-ahead", "next-batch"),
    "realism": ("score", "features"),
    "lr_schedule": ("cosine", "constant"),
}


# Settings that may be given without a value on the command line.
BARE_FLAGS = {"resume": "latest", "amp": "true", "channels_last": "true", "compile": "true"}


class UserError(Exception):
    """A mistake the user can fix; train.py prints the message alone, no stack trace."""


class ConfigError(UserError):
    pass


class HelpRequested(Exception):
    """-h or --help among the words: the caller prints help_text() and exits 0."""


def help_text():
    """Usage, presets and every setting with its default and meaning (train.py --help)."""
    import sys
    import settings_text  # reads this file's comments; imported only when asked
    return settings_text.help_text(sys.modules[__name__])


def _suggest(name, options):
    close = difflib.get_close_matches(name, options, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _field_types():
    return {f.name: f.type for f in dataclasses.fields(Config) if f.name != "goals"}


def _parse_value(name, text):
    kind = _field_types()[name]
    try:
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is tuple:
            return tuple(int(part) for part in text.split(","))
        return kind(text)
    except ValueError:
        expected = ("comma-separated integers, e.g. 64,128,256,512" if kind is tuple
                    else kind.__name__)
        raise ConfigError(f"--{name}: cannot read {text!r} as {expected}") from None


def apply_overrides(cfg, overrides):
    """Set fields from a {name: value} dict (values already typed), rejecting unknown names."""
    known = _field_types()
    for name, value in overrides.items():
        if name not in known:
            raise ConfigError(f"unknown setting '{name}'{_suggest(name, list(known))} "
                              "(all settings are the fields of Config in configs.py)")
        setattr(cfg, name, tuple(value) if isinstance(value, list) else value)
    return cfg


def setting_pairs(argv):
    """[(name, value text)] from command-line words: --field value, --field=value, or a bare
    flag of BARE_FLAGS (its value implied). Raises HelpRequested on -h or --help."""
    pairs = []
    words = list(argv)
    while words:
        word = words.pop(0)
        if word in ("-h", "--help"):
            raise HelpRequested
        if not word.startswith("--"):
            raise ConfigError(f"unexpected argument {word!r}; settings look like --epochs 3")
        name, eq, value = word[2:].partition("=")
        name = name.replace("-", "_")
        if not eq:
            if not words or words[0].startswith("--"):
                if name not in BARE_FLAGS:
                    raise ConfigError(f"--{name} needs a value, e.g. --{name}=VALUE")
                words.insert(0, BARE_FLAGS[name])
            value = words.pop(0)
        pairs.append((name, value))
    return pairs


def parse_args(argv):
    """Config from command-line words: [--preset NAME] [--field value | --field=value]...
    Raises HelpRequested on -h or --help."""
    pairs = setting_pairs(argv)
    cfg = Config()
    for name, value in pairs:
        if name == "preset":
            if value not in PRESETS:
                raise ConfigError(f"unknown preset '{value}'{_suggest(value, list(PRESETS))} "
                                  f"(presets: {', '.join(PRESETS)})")
            apply_overrides(cfg, PRESETS[value])
    known = _field_types()
    for name, value in pairs:
        if name == "preset":
            continue
        if name in RETIRED_SETTINGS:
            raise ConfigError(f"--{name} was a research switch, retired since (lab/README.md); "
                              f"commit {LAST_COMMIT_WITH_RETIRED} still has it")
        if name not in known:
            raise ConfigError(f"unknown setting --{name}{_suggest(name, [*known, 'preset'])} "
                              "(all settings are the fields of Config in configs.py)")
        setattr(cfg, name, _parse_value(name, value))
    validate(cfg)
    return cfg


def _require(ok, message):
    if not ok:
        raise ConfigError(message)


def validate(cfg):
    """Stop at start-up, with one line naming the field, the value and what is allowed."""
    for name, kind in _field_types().items():
        value = getattr(cfg, name)
        allowed = (int, float) if kind is float else kind
        _require(isinstance(value, allowed) and (kind is bool or not isinstance(value, bool)),
                 f"{name} = {value!r}: expected {kind.__name__}")
    for name, options in CHOICES.items():
        value = getattr(cfg, name)
        _require(value in options, f"{name} = {value!r}: allowed values are {', '.join(options)}"
                 f"{_suggest(value, list(options))}")
    positive = ("lr", "disc_lr", "batch_size", "epochs", "latent_dim", "core_dim", "image_size",
                "calibration_batches", "disc_every", "synthetic_size", "heldout_size",
                "eval_images", "max_consecutive_rejections", "log_every", "probe_images",
                "factor_vae_variance", "factor_vae_batch", "face_probe_images", "dci_trees",
                "elbo_sigma", "control_measure_every",
                "smooth_max_temperature", "multiplier_rate")
    for name in positive:
        _require(getattr(cfg, name) > 0, f"{name} = {getattr(cfg, name)!r}: must be > 0")
    for name in ("weight_decay", "min_lr", "num_workers", "noise_std", "beta", "fid_images",
                 "calibration_grad_clip", "disc_grad_clip", "lbo_grad_clip", "factor_vae_train",
                 "factor_vae_eval", "epoch_eval_images"):
        _require(getattr(cfg, name) >= 0, f"{name} = {getattr(cfg, name)!r}: must be >= 0")
    for name in ("lr", "disc_lr"):  # a floor above a rate would make the cosine climb to it
        _require(cfg.lr_schedule != "cosine" or cfg.min_lr <= getattr(cfg, name),
                 f"min_lr = {cfg.min_lr}: must be <= {name} ({getattr(cfg, name)}), the "
                 "cosine's floor for both optimizers; to hold the rates, use --lr_schedule "
                 "constant")
    _require(cfg.core_dim < cfg.latent_dim,
             f"core_dim = {cfg.core_dim}: must be < latent_dim ({cfg.latent_dim}) so that "
             "detail has at least one dim")
    _require(cfg.batch_size >= 2, f"batch_size = {cfg.batch_size}: must be >= 2 "
             "(batch statistics and the swap permutation need two images)")
    _require(cfg.image_size % 16 == 0,
             f"image_size = {cfg.image_size}: must be a multiple of 16 (four stride-2 stages)")
    for name in ("enc_channels", "dec_channels", "disc_channels"):
        value = getattr(cfg, name)
        _require(len(value) == 4 and all(c > 0 for c in value),
                 f"{name} = {value!r}: must be four positive channel counts")
    for name in ("tighten_rate", "target_rollback_rate", "backoff_rollback_rate",
                 "backoff_factor"):
        value = getattr(cfg, name)
        _require(0 < value < 1, f"{name} = {value!r}: must be strictly between 0 and 1")
    dropped = dropped_groups(cfg)
    unknown = [g for g in dropped if g not in GROUPS]
    _require(not unknown, f"drop_groups = {cfg.drop_groups!r}: unknown group "
             f"{', '.join(unknown)}; groups are {', '.join(GROUPS)}")
    _require(len(set(dropped)) < len(GROUPS),
             f"drop_groups = {cfg.drop_groups!r}: at least one group must stay")
    _require(0 < cfg.multiplier_target < 1,
             f"multiplier_target = {cfg.multiplier_target!r}: must be strictly between 0 and 1 "
             "(a group score)")
    _require(cfg.tighten_start_epoch >= 1,
             f"tighten_start_epoch = {cfg.tighten_start_epoch}: must be >= 1")
    validate_goals(cfg.goals)


def dropped_groups(cfg):
    return [g.strip() for g in cfg.drop_groups.split(",") if g.strip()]


def detail_consistency_goal():
    """mu_detail unchanged by flips (consistency = split); auto-calibrated like
    core_consistency, in the same group."""
    return _goal("detail_consistency", "latent", "MINIMIZE_SOFT", scale="auto")


def goal_table(cfg):
    """The goals a run scores: the table (cfg.goals), with detail_consistency when
    consistency = split, less the dropped groups."""
    goals = copy.deepcopy(cfg.goals)
    if cfg.consistency == "split":
        goals.append(detail_consistency_goal())
    dropped = dropped_groups(cfg)
    return [g for g in goals if g["group"] not in dropped]


def scores_goals(cfg):
    """Whether the run trains on the goals (lbo and its sum control), not the beta-VAE loss."""
    return cfg.objective != "elbo"


def validate_goals(goals):
    names = set()
    for goal in goals:
        name = goal.get("name", "?")
        where = f"goal '{name}'"
        _require(name not in names, f"{where}: listed twice in the goal table")
        names.add(name)
        _require(goal.get("group") in GROUPS,
                 f"{where}: group {goal.get('group')!r} unknown; groups are {', '.join(GROUPS)}")
        kind = goal.get("type")
        _require(kind in GOAL_TYPES, f"{where}: type {kind!r} unknown; types are "
                 f"{', '.join(GOAL_TYPES)}{_suggest(str(kind), list(GOAL_TYPES))}")
        for param in GOAL_TYPES[kind]:
            value = goal.get(param)
            auto_ok = param == "scale" and value == "auto"
            _require(auto_ok or (isinstance(value, (int, float)) and math.isfinite(value)),
                     f"{where}: {kind} needs a numeric '{param}'"
                     + (" (or 'auto')" if param == "scale" else "") + f", got {value!r}")
        if kind in ("MINIMIZE_SOFT", "MINIMIZE_HARD") and goal["scale"] != "auto":
            _require(goal["scale"] > 0, f"{where}: scale must be > 0, got {goal['scale']}")
        if kind in ("LOWER", "UPPER"):
            _require(goal["margin"] > 0, f"{where}: margin must be > 0, got {goal['margin']}")
        if kind == "AT_MOST":
            _require(goal["upper"] > 0, f"{where}: upper must be > 0, got {goal['upper']}")
        if kind.startswith("BOX"):
            _require(goal["lower"] < goal["upper"],
                     f"{where}: lower ({goal['lower']}) must be < upper ({goal['upper']})")
        if kind == "BOX_ASYMMETRIC":
            _require(goal["lower"] < goal["healthy"] < goal["upper"],
                     f"{where}: healthy ({goal['healthy']}) must lie strictly inside "
                     f"[{goal['lower']}, {goal['upper']}]")
    for group in GROUPS:
        _require(any(g["group"] == group for g in goals), f"group '{group}' has no goal")


def to_dict(cfg):
    """Plain data (lists, numbers, strings) for checkpoints and logs."""
    out = dataclasses.asdict(cfg)
    for key, value in out.items():
        if isinstance(value, tuple):
            out[key] = list(value)
    out["goals"] = copy.deepcopy(cfg.goals)
    return out


def differing_fields(a, b, ignore=RUN_ONLY_FIELDS):
    """Names of the settings (goal table included) in which two configs differ."""
    left, right = to_dict(a), to_dict(b)
    return [k for k in left if k not in ignore and left[k] != right.get(k)]


# Switches retired after their experiments (lab/README.md), each at the value every run
# without it used: an older checkpoint holding one at that value loads as if it were absent.
RETIRED_SETTINGS = {"decode_batchnorm": "joint", "mu_init_std": 0.0,
                    "realism_units": "real_power", "realism_swap_estimate": "plain",
                    "core_target": "image", "pixel_emphasis": 0.0, "cycle_goals": False,
                    "consistency_group": "latent", "consistency_calibration": 1.0,
                    "jitter_scale": 1.0, "consistency_units": "plain"}
LAST_COMMIT_WITH_RETIRED = "c04c085"
# Choices renamed since: an older checkpoint's value, in today's name.
RENAMED_VALUES = {"decoder": {"spec": "standard"}, "consistency": {"spec": "core"}}


def upgraded(data):
    """An older checkpoint's settings (plain data) in today's names, or one line on why they
    cannot be: a switch retired since was on."""
    data = dict(data)
    for name, default in RETIRED_SETTINGS.items():
        if name in data:
            value = data.pop(name)
            _require(value == default, f"this run was made with {name} = {value!r}, a switch "
                     "retired since (lab/README.md, Retired switches); use commit "
                     f"{LAST_COMMIT_WITH_RETIRED} to resume or load it")
    for name, renamed in RENAMED_VALUES.items():
        if name in data:
            data[name] = renamed.get(data[name], data[name])
    return data


def from_dict(data):
    """The Config of a checkpoint's settings (configs.to_dict), older checkpoints included."""
    data = upgraded(data)
    cfg = apply_overrides(Config(), {k: v for k, v in data.items() if k != "goals"})
    cfg.goals = copy.deepcopy(data["goals"])
    validate(cfg)
    return cfg
