//! Early stopping: the run ends when a metric has not improved for `patience` epochs.

use pipeline::EarlyStopping;

use crate::checkpoint::EarlyStoppingState;
use crate::history::EpochRecord;

/// Updates `state` with `record` under the rule `rule`; whether the run must stop now.
pub(crate) fn observe(
    rule: &EarlyStopping,
    state: &mut Option<EarlyStoppingState>,
    record: &EpochRecord,
) -> bool {
    let s = state.get_or_insert(EarlyStoppingState {
        monitor: rule.monitor,
        best: None,
        wait: 0,
    });
    match record.metric(rule.monitor) {
        Some(v) if rule.monitor.improves(v, s.best, rule.min_delta) => {
            s.best = Some(v);
            s.wait = 0;
            false
        }
        _ => {
            s.wait += 1;
            s.wait >= rule.patience.max(1)
        }
    }
}
