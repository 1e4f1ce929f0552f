"""What a run measured and how it is shown: the records of metrics.jsonl (records), the window metrics
(metrics), the sums behind them (totals), the state a checkpoint carries (state), the summary, held-out
evaluation, sanity checks, the tables, the live view and the monitors."""
