"""The experiments of Auto-Encoding Variational Bayes (Kingma & Welling, 2013), rerun with one call each.

Each writes its raw numbers (JSON and CSV), its figure (PNG) and a short markdown summary into
its output folder. ``budget`` is the number of training samples to evaluate, so a CPU run can
take minutes and a full run the paper's 10⁸.
"""
from .fig2 import aevb_fig2
from .fig3 import aevb_fig3
from .grad_variance import grad_variance

__all__ = ["aevb_fig2", "aevb_fig3", "grad_variance"]
