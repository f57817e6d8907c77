"""Figure: library galaxies, the arcs they make, and the Sérsic arcs of the same injections.

``python -m shortcutgates.simulate.source_figure docs/figures/simulated_sources.png``

Each row is one injection of the population (seeded): its lens, position, size, brightness and
PSF are shared by both source kinds; only the source light differs. Columns: the library galaxy
as placed on the sky (unlensed, before the PSF), its lensed image (before the PSF, 0.262″
pixels), the same after the r-band PSF, then the Sérsic source's lensed image before and after
the PSF. Every panel is an arcsinh stretch of its own peak; the cross marks the lens centre.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from shortcutgates.data.io import write_png
from shortcutgates.data.schema import PIXEL_SCALE_ARCSEC
from shortcutgates.simulate.stamps import PSF_RADIUS, source_sets
from shortcutgates.simulate.population import PopulationConfig, draw_conditions, draw_injection
from shortcutgates.simulate.render import Lens, convolve_valid, render
from shortcutgates.simulate.sources import draw_pick, load_library, place

SIZE = 40
"""Side of the arc panels. Unit: pixel (0.262″)."""


def example_rows(n_rows: int = 6, seed: int = 3, sources: str = "hdf") -> list[dict]:
    """Images of ``n_rows`` injections with θ_E ≥ 0.8″ (so the arcs are resolved), both source kinds."""
    rng = np.random.default_rng(seed)
    library = load_library(sources)
    cfg = PopulationConfig(theta_e_range=(0.8, 2.0))
    n_pad = SIZE + 2 * PSF_RADIUS
    centre = (n_pad - 1) / 2
    rows = []
    for _ in range(n_rows):
        cond = draw_conditions(rng, psf_radius=PSF_RADIUS)
        inj = draw_injection(rng, cfg)
        pick, flip = draw_pick(rng, len(library))
        lens = Lens(inj.theta_e, inj.lens_q, inj.lens_phi, inj.shear, inj.shear_phi)
        galaxy = place(library, pick, r_eff=inj.src_reff, x=0.0, y=0.0, phi=inj.src_phi, flip=flip)
        placed = galaxy._replace(x0=galaxy.x0 + inj.src_x, y0=galaxy.y0 + inj.src_y)
        fine = 0.05
        row = {"inj": inj, "galaxy": render(None, (galaxy,), 60, fine, 29.5)[0]}
        for name, sets, weights in (("real", (placed,), np.ones(1)), ("sersic",) + source_sets(inj)[:2]):
            unit = render(lens, sets, n_pad, PIXEL_SCALE_ARCSEC, centre)
            image = np.tensordot(weights.astype(np.float32), unit, axes=1)
            row[name] = image[PSF_RADIUS:-PSF_RADIUS, PSF_RADIUS:-PSF_RADIUS]
            row[name + "_psf"] = convolve_valid(image, cond.psf[1])
        rows.append(row)
    return rows


def plot(rows: list[dict], path) -> Path:
    """Write the figure (PNG) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    titles = (
        "library galaxy\n(unlensed, 0.05″ px)",
        "its arc\n(no PSF)",
        "its arc\n(r-band PSF)",
        "Sérsic arc\n(no PSF)",
        "Sérsic arc\n(r-band PSF)",
    )
    keys = ("galaxy", "real", "real_psf", "sersic", "sersic_psf")
    fig, axes = plt.subplots(len(rows), 5, figsize=(9.5, 1.95 * len(rows)))
    for r, row in enumerate(rows):
        for c, key in enumerate(keys):
            ax = axes[r, c]
            img = row[key]
            ax.imshow(np.arcsinh(img / (0.05 * img.max())), origin="lower", cmap="magma")
            if key != "galaxy":
                ax.plot((SIZE - 1) / 2, (SIZE - 1) / 2, "+", color="cyan", ms=6)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
        inj = row["inj"]
        axes[r, 0].set_ylabel(f"θ_E {inj.theta_e:.2f}″\nR_e {inj.src_reff:.2f}″", fontsize=8)
    fig.suptitle("Real (Hubble XDF) and Sérsic sources of the same injections", fontsize=10)
    fig.tight_layout()
    write_png(fig, path, dpi=90)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="PNG path")
    parser.add_argument("--rows", type=int, default=6, help="Default: %(default)r")
    parser.add_argument("--seed", type=int, default=3, help="Default: %(default)r")
    parser.add_argument("--sources", default="hdf", help="Default: %(default)s")
    args = parser.parse_args(argv)
    print(plot(example_rows(args.rows, args.seed, args.sources), args.out))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
