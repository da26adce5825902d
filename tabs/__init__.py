"""The page's tabs, layout and event wiring only; every handler calls into `core`. `tabs/<tab>.py` builds one tab of
app.TABS; `tabs/<tab>_<what the panel shows>.py` is a panel inside that tab (align_feedback_tally: the align tab's
class-feedback tally); run_panel.py is the training-run panel the align and rl tabs share; common.py what all share."""
