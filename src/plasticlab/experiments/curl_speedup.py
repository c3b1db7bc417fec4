"""curl-speedup (SPEC B.5 "Speed-up"): in a compressive network (M=100, N=10) one anti-Hebbian readout
neuron lets curl descent escape the saddle that slows gradient descent, when the training set is large.

Epochs until the training error first falls below 1e-3 (first log-spaced checkpoint below it), GD vs
curl, over the training-set size P, the number k of flipped readout neurons (of N=10) and the student
init scale r, per activation and with the norm constraint on/off. One chunk = one (activation, norm, P)
shape; its members are seeds × (rule, k, r) conditions. GD and curl share teacher, data and init per seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from plasticlab.errors import PlasticlabError
from plasticlab.experiments.base import Experiment, register
from plasticlab.report import Report
from plasticlab.simulation.curl import CurlConfig, simulate

# The paper's numbers (SPEC B.5): tanh, norm constraint on, k = 1, r = 2, 40 seeds.
PAPER_P = pd.DataFrame(
    dict(
        P=[2000, 1600, 1000, 600, 300, 140, 100],
        gd=[2972, 2889, 2575, 1596, 698, 278, 191],
        curl=[1090, 1248, 1563, 1026, 681, 335, 204],
    )
)
PAPER_K = pd.DataFrame(
    dict(k_readout=list(range(1, 11)), curl=[1215, 1635, 1451, 2262, 2627, 3854, 4703, 5568, 7903, np.inf])
)
PAPER_R = pd.DataFrame(dict(init_scale=[3.0, 6.0], gd=[2449, 17525], curl=[811, 785]))
PAPER_NO_NORM = pd.DataFrame(dict(P=[2000], gd=[1464], curl=[1109]))


def _median(x: pd.Series) -> float:
    """Median with never-converged runs (NaN) counted as slower than every converged one."""
    return float(np.median(np.where(np.isnan(x.to_numpy(float)), np.inf, x.to_numpy(float))))


@register
class CurlSpeedup(Experiment):
    """curl-speedup: epochs to a target train error, GD versus curl descent."""

    name = "curl-speedup"
    summary = "epochs to train error 1e-3, GD vs curl descent (one flipped readout neuron), vs P, k, r"
    budget_s = 180
    defaults = dict(
        Ps=[2000, 1600, 1000, 600, 300, 140, 100],
        ks=list(range(1, 11)),
        init_scales=[2.0, 3.0, 6.0],
        activations=["tanh", "relu", "linear"],
        norms=[True, False],
        seeds=list(range(40)),
        epochs=40000,
        M=100,
        N=10,
        B=10,
        eta=0.1,
        k=1,
        r=2.0,
        sweep_P=2000,
        threshold=1e-3,
        points_per_decade=50,
        dtype="float32",
    )
    # quick: the two ends of the P sweep for the main setting; 10 seeds instead of 40 and a 5000-epoch
    # cap (the paper's GD median at P=2000 is 2972) to fit 3 minutes on 2 cores.
    quick = dict(
        Ps=[2000, 100],
        ks=[1],
        init_scales=[2.0],
        activations=["tanh"],
        norms=[True],
        seeds=list(range(10)),
        epochs=5000,
    )
    choices = dict(activations=["linear", "tanh", "relu"], dtype=["float32", "float64"])

    def validate(self, p):
        for k in p["ks"] + [p["k"]]:
            if not 0 <= k <= p["N"]:
                raise PlasticlabError(f"curl-speedup: k={k} flipped readout neurons must be in [0, N={p['N']}]")
        for P in p["Ps"]:
            if P % p["B"]:
                raise PlasticlabError(f"curl-speedup: P={P} is not a multiple of the batch size B={p['B']}")

    def chunks(self, p):
        out = []
        for act in p["activations"]:
            for norm in p["norms"]:
                for P in p["Ps"]:
                    conds = {("gd", 0, p["r"]), ("curl", p["k"], p["r"])}
                    if p["sweep_P"] == P:
                        conds |= {("curl", k, p["r"]) for k in p["ks"]}
                        conds |= {
                            (rule, k, r) for r in p["init_scales"] for rule, k in (("gd", 0), ("curl", p["k"]))
                        }
                    out.append(
                        dict(
                            activation=act,
                            norm=norm,
                            P=P,
                            conditions=sorted(conds),
                            **{
                                k: p[k]
                                for k in (
                                    "seeds",
                                    "epochs",
                                    "M",
                                    "N",
                                    "B",
                                    "eta",
                                    "threshold",
                                    "points_per_decade",
                                    "dtype",
                                )
                            },
                        )
                    )
        return out

    def run_chunk(self, spec):
        cfg = CurlConfig(
            M=spec["M"],
            N=spec["N"],
            activation=spec["activation"],
            P=spec["P"],
            B=spec["B"],
            epochs=spec["epochs"],
            eta=spec["eta"],
            norm_constraint=spec["norm"],
            threshold=spec["threshold"],
            points_per_decade=spec["points_per_decade"],
            stop_when_converged=True,
            dtype=spec["dtype"],
        )
        rows = [(rule, k, r, s) for rule, k, r in spec["conditions"] for s in spec["seeds"]]
        res = simulate(
            cfg,
            [s for *_, s in rows],
            k2=[k for _, k, _, _ in rows],
            init_scale=[r for _, _, r, _ in rows],
            rule=[rule for rule, *_ in rows],
        )
        t = res.table()
        return pd.DataFrame(
            dict(
                rule=t.rule,
                activation=cfg.activation,
                P=cfg.P,
                k_readout=t.k2,
                init_scale=t.init_scale,
                norm_constraint=cfg.norm_constraint,
                seed=t.seed,
                epochs_to_threshold=t.epochs_to_threshold,
                final_train_error=t.train_error,
                diverged=t.diverged,
                epochs_cap=cfg.epochs,
                epochs_run=res.epochs_run,
            )
        )

    # -- report -----------------------------------------------------------------------------------------
    def report(self, df, p, out):
        import matplotlib.pyplot as plt  # late: workers never plot, and pyplot costs ~1 s to import

        rep = Report(out, "curl-speedup: curl descent escapes the saddle faster than GD at large P", p)
        k0, r0, Ps = p["k"], p["r"], p["sweep_P"]
        med = (
            df.groupby(["activation", "norm_constraint", "P", "rule", "k_readout", "init_scale"])
            .epochs_to_threshold.agg(median=_median, n="size", never=lambda x: int(x.isna().sum()))
            .reset_index()
        )
        rep.text(
            f"Median epochs until train error < {p['threshold']:g} (first checkpoint below it, "
            f"{p['points_per_decade']} log-spaced checkpoints per decade; runs that never get there "
            f"within {p['epochs']} epochs count as slower than all others, `never` counts them). "
            f"{len(p['seeds'])} seeds per condition (the paper used 40)."
        )

        def main(act, norm):
            m = med[
                (med.activation == act)
                & (med.norm_constraint == norm)
                & (med.init_scale == r0)
                & (((med.rule == "curl") & (med.k_readout == k0)) | (med.rule == "gd"))
            ]
            return m.pivot_table(index="P", columns="rule", values="median").reset_index()

        # P sweep: table vs the paper, figure, ratio claims
        fig, axes = plt.subplots(
            1, len(p["activations"]), figsize=(4.2 * len(p["activations"]), 3.4), squeeze=False
        )
        for ax, act in zip(axes[0], p["activations"]):
            for norm, ls in ((True, "-"), (False, ":")):
                if norm not in p["norms"]:
                    continue
                m = main(act, norm)
                for rule, col in (("gd", "C0"), ("curl", "C3")):
                    if rule in m:
                        ax.plot(
                            m.P,
                            m[rule],
                            ls,
                            marker="o",
                            color=col,
                            label=f"{rule}, norm {'on' if norm else 'off'} (ours)",
                        )
            if act == "tanh":
                ax.plot(PAPER_P.P, PAPER_P.gd, "s", mfc="none", color="C0", label="gd (paper)")
                ax.plot(PAPER_P.P, PAPER_P.curl, "s", mfc="none", color="C3", label="curl (paper)")
            ax.set(
                xscale="log",
                yscale="log",
                xlabel="training-set size P",
                ylabel="median epochs to 1e-3",
                title=f"{act}, k={k0}, r={r0:g}",
            )
            ax.legend(fontsize=7)
        rep.figure(fig, "speedup_vs_P", "Median epochs to train error 1e-3 vs P (ours: lines; paper: squares)")

        for act in p["activations"]:
            for norm in p["norms"]:
                m = main(act, norm)
                if not {"gd", "curl"} <= set(m.columns):
                    continue
                m["gd / curl"] = m.gd / m.curl
                tag = f"{act}, norm {'on' if norm else 'off'}"
                rep.table(m, f"Median epochs ({tag}, k={k0}, r={r0:g}) and the speed-up ratio")
                if act == "tanh" and norm:
                    long = m.melt(id_vars="P", value_vars=["gd", "curl"], var_name="rule", value_name="epochs")
                    paper = PAPER_P[PAPER_P.P.isin(m.P)].melt(id_vars="P", var_name="rule", value_name="epochs")
                    rep.compare(
                        long,
                        paper,
                        on=["P", "rule"],
                        value="epochs",
                        caption="P sweep (tanh, norm on): ours vs the paper's medians",
                    )
                big, small = m.P.max(), m.P.min()
                rb = float(m.loc[big == m.P, "gd / curl"].iloc[0])
                rs = float(m.loc[small == m.P, "gd / curl"].iloc[0])
                if big >= 1000:
                    rep.claim(
                        f"{tag}: curl descent learns faster than GD at large P (gd/curl ≥ 1.5 at P={big})",
                        rb >= 1.5,
                        f"gd/curl = {rb:.2f} at P={big}",
                    )
                if small <= 140:
                    rep.claim(
                        f"{tag}: no speed-up at small P (gd/curl ≤ 1.1 at P={small})",
                        rs <= 1.1,
                        f"gd/curl = {rs:.2f} at P={small}",
                    )
                if len(m) >= 3:
                    rho = pd.Series(m["gd / curl"].to_numpy()).corr(
                        pd.Series(np.log(m.P.to_numpy())), method="spearman"
                    )
                    rep.claim(
                        f"{tag}: the speed-up grows with P", rho > 0.5, f"Spearman ρ(P, gd/curl) = {rho:.2f}"
                    )

        # k sweep
        ks = med[(Ps == med.P) & (med.init_scale == r0) & (med.rule == "curl")]
        if ks.k_readout.nunique() > 1:
            self._k_sweep(rep, med, ks, p)
        # init-scale sweep
        rs = med[(Ps == med.P) & (((med.rule == "curl") & (med.k_readout == k0)) | (med.rule == "gd"))]
        if rs.init_scale.nunique() > 1:
            self._r_sweep(rep, rs, p)
        # norm constraint off
        if len(p["norms"]) == 2 and "tanh" in p["activations"] and Ps in p["Ps"]:
            on, off = main("tanh", True), main("tanh", False)
            g_on = float((on.gd / on.curl)[Ps == on.P].iloc[0])
            g_off = float((off.gd / off.curl)[Ps == off.P].iloc[0])
            rep.compare(
                off[Ps == off.P].melt(
                    id_vars="P", value_vars=["gd", "curl"], var_name="rule", value_name="epochs"
                ),
                PAPER_NO_NORM.melt(id_vars="P", var_name="rule", value_name="epochs"),
                on=["P", "rule"],
                value="epochs",
                caption="No norm constraint (tanh): ours vs paper",
            )
            rep.claim(
                "without the norm constraint the gain shrinks",
                g_off < g_on,
                f"gd/curl at P={Ps}: {g_on:.2f} (norm on) vs {g_off:.2f} (off)",
            )
        rep.table(
            med.rename(columns={"median": "median_epochs"}),
            "Every condition: median epochs, runs, runs that never reached the threshold",
        )
        rep.write()

    def _k_sweep(self, rep, med, ks, p):
        import matplotlib.pyplot as plt  # late: workers never plot, and pyplot costs ~1 s to import

        fig, ax = plt.subplots(figsize=(4.5, 3.4))
        for (act, norm), g in ks.groupby(["activation", "norm_constraint"]):
            ax.plot(g.k_readout, g["median"], "-o", label=f"{act}, norm {'on' if norm else 'off'}")
            gd = med[
                (med.activation == act)
                & (med.norm_constraint == norm)
                & (p["sweep_P"] == med.P)
                & (med.rule == "gd")
                & (med.init_scale == p["r"])
            ]["median"]
            ax.axhline(float(gd.iloc[0]), ls=":", color=ax.lines[-1].get_color())
        ax.plot(PAPER_K.k_readout, PAPER_K.curl, "s", mfc="none", color="k", label="paper (tanh, norm on)")
        ax.set(
            yscale="log",
            xlabel="flipped readout neurons k (of N=10)",
            ylabel="median epochs to 1e-3",
            title=f"P={p['sweep_P']}; dotted: GD",
        )
        ax.legend(fontsize=7)
        rep.figure(fig, "speedup_vs_k", "Curl descent epochs vs the number of flipped readout neurons")
        main = ks[(ks.activation == "tanh") & ks.norm_constraint] if "tanh" in p["activations"] else ks
        if len(main):
            rep.compare(
                main[["k_readout", "median"]].rename(columns={"median": "curl"}),
                PAPER_K,
                on=["k_readout"],
                value="curl",
                caption="k sweep (tanh, norm on, P=2000): curl medians",
            )
            kmax = main[main.k_readout == p["N"]]
            if len(kmax):
                rep.claim(
                    f"k = N = {p['N']} (all readout neurons flipped) never converges",
                    bool(np.isinf(kmax["median"]).all()),
                    f"{int(kmax.never.iloc[0])}/{int(kmax.n.iloc[0])} runs never reached the threshold",
                )
            fin = main[main.k_readout < p["N"]]
            if len(fin) >= 3:
                rho = fin["median"].corr(fin.k_readout, method="spearman")
                rep.claim(
                    "more flipped readout neurons make curl descent slower",
                    rho > 0.5,
                    f"Spearman ρ(k, median epochs) = {rho:.2f}",
                )

    def _r_sweep(self, rep, rs, p):
        import matplotlib.pyplot as plt  # late: workers never plot, and pyplot costs ~1 s to import

        fig, ax = plt.subplots(figsize=(4.5, 3.4))
        for (act, norm, rule), g in rs.groupby(["activation", "norm_constraint", "rule"]):
            ax.plot(g.init_scale, g["median"], "-o", label=f"{rule}, {act}, norm {'on' if norm else 'off'}")
        ax.plot(PAPER_R.init_scale, PAPER_R.gd, "s", mfc="none", color="C0", label="gd (paper)")
        ax.plot(PAPER_R.init_scale, PAPER_R.curl, "s", mfc="none", color="C3", label="curl (paper)")
        ax.set(
            yscale="log",
            xlabel="student init scale r",
            ylabel="median epochs to 1e-3",
            title=f"P={p['sweep_P']}, k={p['k']}",
        )
        ax.legend(fontsize=7)
        rep.figure(fig, "speedup_vs_r", "Epochs vs student init scale: GD slows, curl descent does not")
        t = rs[(rs.activation == "tanh") & rs.norm_constraint] if "tanh" in p["activations"] else rs
        piv = t.pivot_table(index="init_scale", columns="rule", values="median").reset_index()
        if {"gd", "curl"} <= set(piv.columns):
            rep.compare(
                piv.melt(id_vars="init_scale", var_name="rule", value_name="epochs"),
                PAPER_R.melt(id_vars="init_scale", var_name="rule", value_name="epochs"),
                on=["init_scale", "rule"],
                value="epochs",
                caption="init-scale sweep: ours vs paper",
            )
            lo, hi = piv.iloc[0], piv.iloc[-1]
            rep.claim(
                "a larger init scale slows GD much more than curl descent",
                hi.gd / lo.gd > 1.5 * hi.curl / lo.curl,
                f"r {lo.init_scale:g}→{hi.init_scale:g}: GD ×{hi.gd / lo.gd:.2f}, curl ×{hi.curl / lo.curl:.2f}",
            )
