//! App dependencies (`dependsOn`): the order apps are synced in, and the checks that
//! every dependency exists and that no app depends on itself through others.

/// A `dependsOn` that cannot be followed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DependencyError {
    /// A dependency names no app.
    #[error("app {app:?} depends on {dependency:?}, which is not an app (apps: {known})")]
    Unknown {
        /// The app with the `dependsOn`.
        app: String,
        /// The name that matches no app.
        dependency: String,
        /// The names that exist.
        known: String,
    },
    /// Apps depend on each other in a circle.
    #[error("dependency cycle: {}", .cycle.join(" -> "))]
    Cycle {
        /// The apps of the cycle, the first repeated at the end (`a -> b -> a`).
        cycle: Vec<String>,
    },
}

/// The apps (name and `dependsOn`) in an order where each comes after its dependencies:
/// topological, ties broken by the given order. Returns indices into `apps`.
pub fn dependency_order<'a, I, D>(apps: I) -> Result<Vec<usize>, DependencyError>
where
    I: IntoIterator<Item = (&'a str, D)>,
    D: IntoIterator<Item = &'a str>,
{
    let (names, deps): (Vec<&str>, Vec<Vec<&str>>) = apps
        .into_iter()
        .map(|(name, deps)| (name, deps.into_iter().collect()))
        .unzip();
    let index = |name: &str| names.iter().position(|n| *n == name);
    let mut edges: Vec<Vec<usize>> = Vec::with_capacity(names.len());
    for (app, deps) in names.iter().zip(&deps) {
        let mut resolved = Vec::with_capacity(deps.len());
        for dep in deps {
            resolved.push(index(dep).ok_or_else(|| DependencyError::Unknown {
                app: app.to_string(),
                dependency: dep.to_string(),
                known: names.join(", "),
            })?);
        }
        edges.push(resolved);
    }
    let mut done = vec![false; names.len()];
    let mut order = Vec::with_capacity(names.len());
    while order.len() < names.len() {
        let next = (0..names.len()).find(|&i| !done[i] && edges[i].iter().all(|&d| done[d]));
        match next {
            Some(i) => {
                done[i] = true;
                order.push(i);
            }
            None => {
                let start = (0..names.len())
                    .find(|&i| !done[i])
                    .expect("an app is left");
                return Err(DependencyError::Cycle {
                    cycle: find_cycle(start, &edges, &done)
                        .into_iter()
                        .map(|i| names[i].to_string())
                        .collect(),
                });
            }
        }
    }
    Ok(order)
}

/// A cycle among the apps not `done`, reached from `start` (every such app has a
/// dependency that is not done either).
fn find_cycle(start: usize, edges: &[Vec<usize>], done: &[bool]) -> Vec<usize> {
    let mut path = vec![start];
    loop {
        let last = *path.last().expect("path starts with one app");
        let next = *edges[last]
            .iter()
            .find(|&&d| !done[d])
            .expect("a blocked app has a pending dependency");
        if let Some(at) = path.iter().position(|&i| i == next) {
            let mut cycle = path.split_off(at);
            cycle.push(next);
            return cycle;
        }
        path.push(next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(apps: &[(&'static str, &[&'static str])]) -> Result<Vec<&'static str>, String> {
        dependency_order(apps.iter().map(|(n, d)| (*n, d.iter().copied())))
            .map(|o| o.into_iter().map(|i| apps[i].0).collect())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn dependencies_come_first_ties_keep_file_order() {
        assert_eq!(order(&[]), Ok(vec![]));
        assert_eq!(order(&[("a", &[]), ("b", &[])]), Ok(vec!["a", "b"]));
        assert_eq!(
            order(&[
                ("web", &["db", "cache"]),
                ("db", &[]),
                ("cache", &["db"]),
                ("docs", &[])
            ]),
            Ok(vec!["db", "cache", "web", "docs"])
        );
        assert_eq!(
            order(&[("c", &["a"]), ("b", &[]), ("a", &[]), ("d", &["c", "c"])]),
            Ok(vec!["b", "a", "c", "d"])
        );
    }

    #[test]
    fn unknown_dependencies_and_cycles_are_named() {
        assert_eq!(
            order(&[("web", &["db"]), ("api", &[])]),
            Err("app \"web\" depends on \"db\", which is not an app (apps: web, api)".into())
        );
        assert_eq!(
            order(&[("a", &["a"])]),
            Err("dependency cycle: a -> a".into())
        );
        assert_eq!(
            order(&[
                ("x", &[]),
                ("a", &["b"]),
                ("b", &["c"]),
                ("c", &["a"]),
                ("d", &["a"])
            ]),
            Err("dependency cycle: a -> b -> c -> a".into())
        );
        assert_eq!(
            order(&[("d", &["a"]), ("a", &["b"]), ("b", &["a"])]),
            Err("dependency cycle: a -> b -> a".into()),
        );
    }
}
