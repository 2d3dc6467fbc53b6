"""Experiments: specs of runs, the run store that keeps their results, and provenance.

Import the submodules directly (``from dat_lab.experiments.store import RunStore``); this
package imports nothing heavy on its own.
"""
