"""Light core of the FER2013 ensemble: the artifact contract, TTA views, voting, metrics and reports.

numpy and pandas only: nothing here imports a deep-learning framework.
"""
