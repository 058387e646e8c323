//! `--shard auto`: which slice of a fanned-out stage this process computes, from the batch
//! scheduler's environment.
//!
//! - **Slurm array job** (`sbatch --array=A-B`): `SLURM_ARRAY_TASK_ID`, with
//!   `SLURM_ARRAY_TASK_MIN` and either `SLURM_ARRAY_TASK_MAX` or `SLURM_ARRAY_TASK_COUNT` (both
//!   must agree when both are set). Task `id` is slice `id − min + 1` of `max − min + 1`, so ids
//!   need not start at 1 (`--array=0-3` and `--array=1-4` are the same four slices). A stepped
//!   or listed array (`--array=0-9:2`, `--array=1,3,5`) is refused: its ids skip slices, which
//!   would never be computed (`SLURM_ARRAY_TASK_STEP` other than 1, or a count below
//!   `max − min + 1`).
//! - **Kubernetes Indexed Job** (`completionMode: Indexed`): `JOB_COMPLETION_INDEX`, 0-based,
//!   is slice `index + 1`. Kubernetes does not tell a pod how many completions its job has,
//!   so the count comes from `--shard auto/N` or the variable `LITTLEDATA_SHARD_COUNT` (both
//!   must agree when both are given; set it from the same value as `completions`).
//!
//! Under Slurm a count given with `auto/N` or `LITTLEDATA_SHARD_COUNT` must equal the array's
//! size. Anything missing, malformed or contradictory is an error naming the variables, never
//! a guess: a wrong slice silently leaves images out until `merge` finds the set incomplete.
//!
//! [`array_task`] is the pure logic (the environment is a lookup function, so it is testable);
//! [`auto_shard`] parses the `--shard` argument and reads the process environment.

/// The variable naming the shard count for a Kubernetes Indexed Job (or checking Slurm's).
pub const SHARD_COUNT_VAR: &str = "LITTLEDATA_SHARD_COUNT";

const SLURM_ID: &str = "SLURM_ARRAY_TASK_ID";
const SLURM_MIN: &str = "SLURM_ARRAY_TASK_MIN";
const SLURM_MAX: &str = "SLURM_ARRAY_TASK_MAX";
const SLURM_COUNT: &str = "SLURM_ARRAY_TASK_COUNT";
const SLURM_STEP: &str = "SLURM_ARRAY_TASK_STEP";
const SLURM_JOB: &str = "SLURM_JOB_ID";
const K8S_INDEX: &str = "JOB_COMPLETION_INDEX";

/// Why the scheduler's environment gives no usable slice. Every message names the variables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ClusterError(String);

/// `(index, count)`: slice `index` (1-based) of `count`, for the array task or indexed-job pod
/// this process runs as. `count` is the count asked for with `auto/N` (or `None` for plain
/// `auto`); `env` looks a variable up (`|k| std::env::var(k).ok()` for the real environment).
pub fn array_task(
    count: Option<usize>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(usize, usize), ClusterError> {
    let err = |m: String| Err(ClusterError(m));
    // The count from `auto/N` and LITTLEDATA_SHARD_COUNT, which must agree.
    let named = match (count, number(&env, SHARD_COUNT_VAR)?) {
        (Some(a), Some(b)) if a != b => {
            return err(format!(
                "--shard auto/{a} and {SHARD_COUNT_VAR}={b} disagree on the shard count"
            ));
        }
        (Some(0), _) | (_, Some(0)) => return err("the shard count must be at least 1".into()),
        (a, b) => a.or(b),
    };
    let slurm = env(SLURM_ID).is_some();
    let k8s = env(K8S_INDEX).is_some();
    match (slurm, k8s) {
        (true, true) => err(format!(
            "both {SLURM_ID} (a Slurm array task) and {K8S_INDEX} (a Kubernetes Indexed Job) \
             are set; unset the one that does not apply"
        )),
        (true, false) => slurm_task(named, &env),
        (false, true) => {
            let index = required(&env, K8S_INDEX)?;
            let Some(count) = named else {
                return err(format!(
                    "{K8S_INDEX}={index} (a Kubernetes Indexed Job) gives no shard count: pass \
                     --shard auto/N or set {SHARD_COUNT_VAR}=N, with N the job's completions"
                ));
            };
            if index >= count {
                return err(format!(
                    "{K8S_INDEX}={index} is out of range for {count} shards (indices run from 0 \
                     to {}); the job's completions and the shard count differ",
                    count - 1
                ));
            }
            Ok((index + 1, count))
        }
        (false, false) if env(SLURM_JOB).is_some() => err(format!(
            "this Slurm job ({SLURM_JOB} is set) is not an array job ({SLURM_ID} is unset); \
             submit it with `sbatch --array=1-N`"
        )),
        (false, false) => err(format!(
            "not a Slurm array task ({SLURM_ID}) nor a Kubernetes Indexed Job ({K8S_INDEX}): \
             neither variable is set; give the slice as --shard i/n instead"
        )),
    }
}

/// The slice of a Slurm array task (`SLURM_ARRAY_TASK_ID` is set).
fn slurm_task(
    named: Option<usize>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<(usize, usize), ClusterError> {
    let err = |m: String| Err(ClusterError(m));
    let id = required(env, SLURM_ID)?;
    if let Some(step) = number(env, SLURM_STEP)?
        && step != 1
    {
        return err(format!(
            "{SLURM_STEP}={step}: a stepped Slurm array (--array=A-B:{step}) skips slices; \
             submit a contiguous one (--array=1-N)"
        ));
    }
    let min = number(env, SLURM_MIN)?.ok_or_else(|| {
        ClusterError(format!(
            "{SLURM_ID}={id} is set but {SLURM_MIN} is not (Slurm sets both for array jobs)"
        ))
    })?;
    let max = number(env, SLURM_MAX)?;
    let count = number(env, SLURM_COUNT)?;
    let span = match (max, count) {
        (Some(max), _) if max < min => {
            return err(format!("{SLURM_MAX}={max} is below {SLURM_MIN}={min}"));
        }
        (Some(max), Some(count)) if count != max - min + 1 => {
            return err(format!(
                "{SLURM_COUNT}={count} tasks with ids {min} to {max} ({SLURM_MIN}..{SLURM_MAX}): \
                 the array's ids are not contiguous (--array=1,3,5 or A-B:step) and would skip \
                 slices; submit a contiguous one (--array=1-N)"
            ));
        }
        (Some(max), _) => max - min + 1,
        (None, Some(count)) if count > 0 => count,
        (None, _) => {
            return err(format!(
                "{SLURM_ID}={id} is set but neither {SLURM_MAX} nor a positive {SLURM_COUNT} \
                 is, so the number of tasks is unknown"
            ));
        }
    };
    if id < min || id - min >= span {
        return err(format!(
            "{SLURM_ID}={id} is outside the array's ids {min} to {} ({SLURM_MIN}, {SLURM_MAX} / \
             {SLURM_COUNT})",
            min + span - 1
        ));
    }
    if let Some(n) = named
        && n != span
    {
        return err(format!(
            "the Slurm array has {span} tasks ({SLURM_MIN}={min} to {}) but the shard count \
             asked for (--shard auto/N or {SHARD_COUNT_VAR}) is {n}",
            min + span - 1
        ));
    }
    Ok((id - min + 1, span))
}

/// A variable read as a whole number; `None` when unset.
fn number(env: &impl Fn(&str) -> Option<String>, var: &str) -> Result<Option<usize>, ClusterError> {
    env(var)
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| ClusterError(format!("{var}={v:?} is not a whole number (0 or more)")))
        })
        .transpose()
}

/// A variable that must be set, read as a whole number.
fn required(env: &impl Fn(&str) -> Option<String>, var: &str) -> Result<usize, ClusterError> {
    number(env, var)?.ok_or_else(|| ClusterError(format!("{var} is not set")))
}

/// `--shard auto` or `--shard auto/N` resolved against the process environment: `None` when
/// `arg` is neither (an explicit `i/n`, parsed by the caller), else [`array_task`]'s answer.
pub fn auto_shard(arg: &str) -> Option<Result<(usize, usize), ClusterError>> {
    auto_shard_with(arg, |k| std::env::var(k).ok())
}

/// [`auto_shard`] with the environment given as a lookup function.
pub fn auto_shard_with(
    arg: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Option<Result<(usize, usize), ClusterError>> {
    let rest = arg.trim().strip_prefix("auto")?;
    let count = match rest.strip_prefix('/') {
        None if rest.is_empty() => None,
        None => return None,
        Some(n) => match n.trim().parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                return Some(Err(ClusterError(format!(
                    "auto/{n}: the shard count after `auto/` is not a whole number"
                ))));
            }
        },
    };
    Some(array_task(count, env))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn slurm(id: &str, min: &str, max: &str) -> Vec<(&'static str, String)> {
        vec![
            (SLURM_JOB, "42".into()),
            (SLURM_ID, id.into()),
            (SLURM_MIN, min.into()),
            (SLURM_MAX, max.into()),
        ]
    }

    fn with(vars: &[(&'static str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn error(r: Result<(usize, usize), ClusterError>) -> String {
        r.expect_err("an error").to_string()
    }

    #[test]
    fn slurm_array_from_one() {
        for id in 1..=4 {
            let vars = slurm(&id.to_string(), "1", "4");
            assert_eq!(array_task(None, with(&vars)), Ok((id, 4)));
        }
    }

    #[test]
    fn slurm_array_ids_need_not_start_at_one() {
        assert_eq!(array_task(None, with(&slurm("0", "0", "3"))), Ok((1, 4)));
        assert_eq!(array_task(None, with(&slurm("3", "0", "3"))), Ok((4, 4)));
        assert_eq!(
            array_task(None, with(&slurm("17", "10", "19"))),
            Ok((8, 10))
        );
    }

    #[test]
    fn slurm_single_task_array() {
        assert_eq!(array_task(None, with(&slurm("5", "5", "5"))), Ok((1, 1)));
    }

    #[test]
    fn slurm_count_instead_of_max() {
        let vars = env(&[(SLURM_ID, "7"), (SLURM_MIN, "5"), (SLURM_COUNT, "3")]);
        assert_eq!(array_task(None, vars), Ok((3, 3)));
    }

    #[test]
    fn slurm_with_every_variable_and_step_one() {
        let mut vars = slurm("2", "1", "4");
        vars.push((SLURM_COUNT, "4".into()));
        vars.push((SLURM_STEP, "1".into()));
        assert_eq!(array_task(None, with(&vars)), Ok((2, 4)));
    }

    #[test]
    fn slurm_stepped_array_is_refused() {
        let mut vars = slurm("2", "0", "8");
        vars.push((SLURM_COUNT, "5".into()));
        vars.push((SLURM_STEP, "2".into()));
        let e = error(array_task(None, with(&vars)));
        assert!(e.contains(SLURM_STEP) && e.contains("stepped"), "{e}");
    }

    #[test]
    fn slurm_listed_array_is_refused() {
        // --array=1,3,5: no step, but the count is below the id span.
        let mut vars = slurm("3", "1", "5");
        vars.push((SLURM_COUNT, "3".into()));
        let e = error(array_task(None, with(&vars)));
        assert!(
            e.contains("not contiguous") && e.contains(SLURM_COUNT),
            "{e}"
        );
    }

    #[test]
    fn slurm_needs_min_and_max_or_count() {
        let e = error(array_task(None, env(&[(SLURM_ID, "1"), (SLURM_MAX, "4")])));
        assert!(e.contains(SLURM_MIN), "{e}");
        let e = error(array_task(None, env(&[(SLURM_ID, "1"), (SLURM_MIN, "1")])));
        assert!(e.contains(SLURM_MAX) && e.contains(SLURM_COUNT), "{e}");
        let vars = env(&[(SLURM_ID, "1"), (SLURM_MIN, "1"), (SLURM_COUNT, "0")]);
        assert!(error(array_task(None, vars)).contains(SLURM_COUNT));
    }

    #[test]
    fn slurm_id_outside_the_array_is_refused() {
        let e = error(array_task(None, with(&slurm("5", "1", "4"))));
        assert!(e.contains(SLURM_ID) && e.contains("outside"), "{e}");
        let e = error(array_task(None, with(&slurm("0", "1", "4"))));
        assert!(e.contains("outside"), "{e}");
        let e = error(array_task(None, with(&slurm("3", "4", "2"))));
        assert!(e.contains(SLURM_MAX) && e.contains("below"), "{e}");
    }

    #[test]
    fn slurm_malformed_numbers_are_named() {
        let e = error(array_task(None, with(&slurm("x", "1", "4"))));
        assert!(e.contains(SLURM_ID) && e.contains("\"x\""), "{e}");
        let e = error(array_task(None, with(&slurm("1", "-1", "4"))));
        assert!(e.contains(SLURM_MIN), "{e}");
        let e = error(array_task(None, with(&slurm("", "1", "4"))));
        assert!(e.contains(SLURM_ID), "{e}");
    }

    #[test]
    fn slurm_count_given_must_match_the_array() {
        assert_eq!(array_task(Some(4), with(&slurm("2", "1", "4"))), Ok((2, 4)));
        let e = error(array_task(Some(8), with(&slurm("2", "1", "4"))));
        assert!(e.contains("4 tasks") && e.contains("is 8"), "{e}");
        let mut vars = slurm("2", "1", "4");
        vars.push((SHARD_COUNT_VAR, "3".into()));
        let e = error(array_task(None, with(&vars)));
        assert!(e.contains(SHARD_COUNT_VAR), "{e}");
    }

    #[test]
    fn kubernetes_index_with_count_argument() {
        for i in 0..4 {
            let vars = env(&[(K8S_INDEX, &i.to_string())]);
            assert_eq!(array_task(Some(4), vars), Ok((i + 1, 4)));
        }
    }

    #[test]
    fn kubernetes_index_with_count_variable() {
        let vars = env(&[(K8S_INDEX, "2"), (SHARD_COUNT_VAR, "3")]);
        assert_eq!(array_task(None, vars), Ok((3, 3)));
        let vars = env(&[(K8S_INDEX, "2"), (SHARD_COUNT_VAR, "3")]);
        assert_eq!(array_task(Some(3), vars), Ok((3, 3)));
    }

    #[test]
    fn kubernetes_without_count_is_refused() {
        let e = error(array_task(None, env(&[(K8S_INDEX, "0")])));
        assert!(e.contains(K8S_INDEX) && e.contains(SHARD_COUNT_VAR), "{e}");
        assert!(e.contains("auto/N"), "{e}");
    }

    #[test]
    fn kubernetes_inconsistent_counts_are_refused() {
        let vars = env(&[(K8S_INDEX, "0"), (SHARD_COUNT_VAR, "3")]);
        let e = error(array_task(Some(4), vars));
        assert!(e.contains(SHARD_COUNT_VAR) && e.contains("auto/4"), "{e}");
        let e = error(array_task(Some(4), env(&[(K8S_INDEX, "4")])));
        assert!(e.contains(K8S_INDEX) && e.contains("out of range"), "{e}");
        let vars = env(&[(K8S_INDEX, "0"), (SHARD_COUNT_VAR, "four")]);
        assert!(error(array_task(None, vars)).contains(SHARD_COUNT_VAR));
    }

    #[test]
    fn zero_count_is_refused() {
        let e = error(array_task(Some(0), env(&[(K8S_INDEX, "0")])));
        assert!(e.contains("at least 1"), "{e}");
        let vars = env(&[(K8S_INDEX, "0"), (SHARD_COUNT_VAR, "0")]);
        assert!(error(array_task(None, vars)).contains("at least 1"));
    }

    #[test]
    fn both_schedulers_are_refused() {
        let mut vars = slurm("1", "1", "4");
        vars.push((K8S_INDEX, "0".into()));
        let e = error(array_task(Some(4), with(&vars)));
        assert!(e.contains(SLURM_ID) && e.contains(K8S_INDEX), "{e}");
    }

    #[test]
    fn no_scheduler_is_refused() {
        let e = error(array_task(None, env(&[])));
        assert!(e.contains(SLURM_ID) && e.contains(K8S_INDEX), "{e}");
        let e = error(array_task(Some(4), env(&[(SHARD_COUNT_VAR, "4")])));
        assert!(e.contains("neither variable"), "{e}");
        let e = error(array_task(None, env(&[(SLURM_JOB, "12")])));
        assert!(
            e.contains("not an array job") && e.contains("--array"),
            "{e}"
        );
    }

    #[test]
    fn auto_argument_parsing() {
        let k8s = || env(&[(K8S_INDEX, "1"), (SHARD_COUNT_VAR, "2")]);
        assert_eq!(auto_shard_with("auto", k8s()), Some(Ok((2, 2))));
        assert_eq!(auto_shard_with(" auto/2 ", k8s()), Some(Ok((2, 2))));
        assert_eq!(auto_shard_with("2/4", k8s()), None);
        assert_eq!(auto_shard_with("automatic", k8s()), None);
        let e = auto_shard_with("auto/x", k8s())
            .expect("auto")
            .expect_err("bad count");
        assert!(e.to_string().contains("auto/x"), "{e}");
        let e = auto_shard_with("auto/3", k8s())
            .expect("auto")
            .expect_err("mismatch");
        assert!(e.to_string().contains(SHARD_COUNT_VAR), "{e}");
    }
}
