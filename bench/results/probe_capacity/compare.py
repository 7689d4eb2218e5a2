"""Ridge against nonlinear probes on one run's codes (a screen)."""
import sys, numpy as np, torch
sys.path.insert(0, '/work/main')
import evaluate, benchmarks, disentanglement
from sklearn.neighbors import KNeighborsRegressor
from sklearn.neural_network import MLPRegressor
from sklearn.preprocessing import StandardScaler
from sklearn.pipeline import make_pipeline
from sklearn.metrics import r2_score
torch.set_num_threads(2)
cfg, vae, _ = evaluate.load_checkpoint(sys.argv[1], torch.device('cpu'))
vae.eval()
fs = benchmarks.factor_set(cfg)
rng = np.random.default_rng(cfg.seed + evaluate.FACTOR_SEED_OFFSET)
n = min(cfg.probe_images, len(fs))
rows = np.arange(n) if fs.random_order else rng.permutation(len(fs))[:n]
with torch.no_grad():
    codes = evaluate._encode_rows(vae, fs.images, rows, torch.device('cpu'), evaluate.contextlib.nullcontext)
f = fs.factors[rows]; fit = int(0.8 * n)
print(sys.argv[1], 'images', n)
def probes(X, y):
    a, b, ya, yb = X[:fit], X[fit:], y[:fit], y[fit:]
    ridge = float(np.mean(disentanglement.ridge_probe_r2(a, ya[:, None], b, yb[:, None])))
    knn = r2_score(yb, make_pipeline(StandardScaler(), KNeighborsRegressor(15, weights='distance')).fit(a, ya).predict(b))
    mlp = r2_score(yb, make_pipeline(StandardScaler(), MLPRegressor(hidden_layer_sizes=(64,), max_iter=2000, alpha=1e-3, random_state=0)).fit(a, ya).predict(b))
    return ridge, knn, mlp
core = vae.core_dim
for k, name in enumerate(fs.names):
    if name in ('shape', 'rotation'): continue
    y = f[:, k].astype(float)
    detail_dims = core + np.asarray(disentanglement.best_dims(codes[:fit, core:], y[:fit], core, disentanglement.R2))
    out = {part: probes(X, y) for part, X in (('all', codes), ('core', codes[:, :core]), ('detail8', codes[:, detail_dims]))}
    print(f"{name:14s}", '  '.join(f"{p}: ridge {r:.2f} knn {kn:.2f} mlp {m:.2f}" for p, (r, kn, m) in out.items()))
