//! Deterministic, collision-free names for aggregated tools and prompts.
//!
//! Clients see `<backend>_<item>`; the gateway routes through the table built here and never
//! splits an exposed name. Exposed names satisfy `^[a-zA-Z0-9_-]{1,64}$` (what Claude and
//! the OpenAI tool APIs accept). A name that had to be altered — characters replaced, length
//! cut, or a clash with another backend's name — carries a hash of its *original* pair, so
//! the same `(backend, item)` always gets the same exposed name, whatever else is connected.
//!
//! `_` separates backend and item but may occur in both, so `my` + `svc_echo` and `my_svc` +
//! `echo` both read `my_svc_echo`. The rule that makes this unambiguous: a plain name belongs to
//! the *longest* configured backend name that, followed by `_`, is a prefix of it. A backend's
//! item whose plain name falls into a longer backend's namespace (`my`'s `svc_echo` when `my_svc`
//! is configured) is always hashed, whether or not that backend lists a clashing item and
//! whether or not it is up. So which names a backend gets depends only on its own items and
//! on the configured backend *names* (the operator's choice), never on another backend's
//! list: no backend can produce, take or break another's plain name.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

/// Longest exposed name.
pub const MAX_NAME_LEN: usize = 64;

/// Where an exposed name leads: the backend and the item's name as that backend knows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Origin {
    pub backend: String,
    pub item: String,
}

/// True when `name` is acceptable to every mainstream client as a tool name.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn sanitize(part: &str) -> String {
    part.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Stable digest of the original pair. Length-prefixed so `("a_b", "c")` and `("a", "b_c")`
/// hash differently.
fn pair_hash(origin: &Origin, hex_len: usize) -> String {
    let mut hasher = Sha256::new();
    hasher.update((origin.backend.len() as u64).to_be_bytes());
    hasher.update(origin.backend.as_bytes());
    hasher.update(origin.item.as_bytes());
    let digest = hex::encode(hasher.finalize());
    digest[..hex_len].to_owned()
}

/// `<backend>_<item>`, sanitized; `None` when it had to be altered to become valid.
fn plain_name(origin: &Origin) -> Option<String> {
    let name = format!("{}_{}", origin.backend, origin.item);
    is_valid_name(&name).then_some(name)
}

/// The hashed form: a readable, truncated prefix plus `_` and `hex_len` hex digits.
fn hashed_name(origin: &Origin, hex_len: usize) -> String {
    let readable = sanitize(&format!("{}_{}", origin.backend, origin.item));
    let keep = MAX_NAME_LEN - 1 - hex_len;
    let prefix: String = readable.chars().take(keep).collect();
    format!("{prefix}_{}", pair_hash(origin, hex_len))
}

/// Whether `name` (a plain name of `backend`) lies in the namespace of a longer configured
/// backend, which owns it.
fn owned_by_longer_backend(name: &str, backend: &str, backends: &BTreeSet<String>) -> bool {
    backends.iter().any(|other| {
        other.len() > backend.len()
            && name.len() > other.len()
            && name.starts_with(other.as_str())
            && name.as_bytes()[other.len()] == b'_'
    })
}

/// Assigns every origin an exposed name, taking the backends to be those of the origins. See
/// [`assign_names_among`].
pub fn assign_names(origins: impl IntoIterator<Item = Origin>) -> BTreeMap<String, Origin> {
    let origins: BTreeSet<Origin> = origins.into_iter().collect();
    let backends = origins.iter().map(|o| o.backend.clone()).collect();
    assign_names_among(origins, &backends)
}

/// Assigns every origin an exposed name. `backends` are all configured backends, up or not
/// (the origins' backends are added to them). The result depends only on the *set* of origins
/// and backends, never on their order; an origin whose plain name is valid, unique and in its
/// own backend's namespace keeps it.
pub fn assign_names_among(
    origins: impl IntoIterator<Item = Origin>,
    backends: &BTreeSet<String>,
) -> BTreeMap<String, Origin> {
    let origins: BTreeSet<Origin> = origins.into_iter().collect();
    let mut backends = backends.clone();
    backends.extend(origins.iter().map(|o| o.backend.clone()));
    let plain_name = |origin: &Origin| {
        plain_name(origin).filter(|name| !owned_by_longer_backend(name, &origin.backend, &backends))
    };

    // Pass 1: plain names, counting clashes.
    let mut plain_counts: BTreeMap<String, usize> = BTreeMap::new();
    for origin in &origins {
        if let Some(name) = plain_name(origin) {
            *plain_counts.entry(name).or_default() += 1;
        }
    }

    // An origin needs a hashed name when its plain name is invalid or clashes. A plain name
    // that equals some origin's hashed name is hashed as well: otherwise a backend could list a
    // tool named exactly like another backend's published hashed name and take it over.
    let mut needs_hash: BTreeSet<Origin> = origins
        .iter()
        .filter(|o| plain_name(o).is_none_or(|name| plain_counts[&name] > 1))
        .cloned()
        .collect();
    loop {
        let reserved: BTreeSet<String> = needs_hash.iter().map(|o| hashed_name(o, 8)).collect();
        let squatters: Vec<Origin> = origins
            .iter()
            .filter(|o| !needs_hash.contains(*o))
            .filter(|o| plain_name(o).is_some_and(|name| reserved.contains(&name)))
            .cloned()
            .collect();
        if squatters.is_empty() {
            break;
        }
        needs_hash.extend(squatters);
    }

    let mut table = BTreeMap::new();
    for origin in &origins {
        if !needs_hash.contains(origin)
            && let Some(name) = plain_name(origin)
        {
            table.insert(name, origin.clone());
        }
    }

    // Pass 2: hashed names, lengthening the hash in the (adversarial) case that one lands on
    // a name already taken. Origins are visited in sorted order, so this too is deterministic.
    for origin in needs_hash {
        let name = [8, 16, 32, 48]
            .into_iter()
            .map(|len| hashed_name(&origin, len))
            .find(|candidate| !table.contains_key(candidate))
            .unwrap_or_else(|| hashed_name(&origin, 62));
        table.insert(name, origin);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(backend: &str, item: &str) -> Origin {
        Origin {
            backend: backend.into(),
            item: item.into(),
        }
    }

    fn name_of(table: &BTreeMap<String, Origin>, o: &Origin) -> String {
        table
            .iter()
            .find(|(_, v)| *v == o)
            .map(|(k, _)| k.clone())
            .expect("origin has a name")
    }

    #[test]
    fn simple_names_are_prefixed() {
        let table = assign_names([origin("echo", "echo"), origin("time", "get_current_time")]);
        assert_eq!(table["echo_echo"], origin("echo", "echo"));
        assert_eq!(
            table["time_get_current_time"],
            origin("time", "get_current_time")
        );
    }

    #[test]
    fn every_name_is_valid_and_unique() {
        let long = "x".repeat(200);
        let origins = vec![
            origin("a_b", "c"),
            origin("a", "b_c"),
            origin("my server", "do.thing"),
            origin("my_server", "do_thing"),
            origin(&long, "t"),
            origin(&long, "u"),
            origin("ünï", "cödé"),
            origin("b", ""),
            origin("", "x"),
        ];
        let table = assign_names(origins.clone());
        assert_eq!(table.len(), origins.len());
        for name in table.keys() {
            assert!(is_valid_name(name), "{name}");
        }
    }

    #[test]
    fn a_name_belongs_to_the_longest_backend_prefix() {
        let table = assign_names([origin("a_b", "c"), origin("a", "b_c")]);
        assert_eq!(table["a_b_c"], origin("a_b", "c"));
        let other = name_of(&table, &origin("a", "b_c"));
        assert!(other.starts_with("a_b_c_") && other.len() == "a_b_c_".len() + 8);
    }

    /// Found by a hostile read: `my` listed `svc_echo` and so broke `my_svc`'s `my_svc_echo`.
    #[test]
    fn a_backend_cannot_rename_its_neighbours_tool() {
        let victim = origin("my_svc", "echo");
        let configured: BTreeSet<String> = ["my".to_owned(), "my_svc".to_owned()].into();
        let alone = assign_names_among([victim.clone()], &configured);
        assert_eq!(alone["my_svc_echo"], victim);
        // Whatever `my` lists, and whether `my_svc` is up or not, `my_svc_echo` is never
        // `my`'s: a call to it cannot reach the squatter.
        for attack in ["svc_echo", "svc", "svc_echo_", "svc_echo_00000000"] {
            let squat = origin("my", attack);
            let crowded = assign_names_among([victim.clone(), squat.clone()], &configured);
            assert_eq!(crowded["my_svc_echo"], victim, "{attack}");
            let down = assign_names_among([squat.clone()], &configured);
            assert!(!down.contains_key("my_svc_echo"), "{attack}");
        }
        // Neither can the longer backend take a name of the shorter one outside its namespace.
        let mine = origin("my", "tool");
        let table = assign_names_among([mine.clone(), origin("my_svc", "x")], &configured);
        assert_eq!(table["my_tool"], mine);
    }

    #[test]
    fn names_are_deterministic_and_order_independent() {
        let mut origins = vec![
            origin("a_b", "c"),
            origin("a", "b_c"),
            origin("srv", &"long".repeat(30)),
            origin("x y", "z"),
        ];
        let first = assign_names(origins.clone());
        origins.reverse();
        assert_eq!(first, assign_names(origins));
    }

    #[test]
    fn altered_names_depend_only_on_their_own_pair() {
        let o = origin("my server", "fetch");
        let alone = name_of(&assign_names([o.clone()]), &o);
        let crowded = name_of(
            &assign_names([o.clone(), origin("other", "t"), origin("x", "y")]),
            &o,
        );
        assert_eq!(alone, crowded);
        assert!(alone.starts_with("my_server_fetch_"), "{alone}");
    }

    #[test]
    fn long_names_are_cut_to_64_with_stable_suffix() {
        let o = origin("backend", &"t".repeat(100));
        let name = name_of(&assign_names([o.clone()]), &o);
        assert_eq!(name.len(), MAX_NAME_LEN);
        assert!(name.starts_with("backend_ttt"));
        assert_eq!(name, hashed_name(&o, 8));
    }

    #[test]
    fn a_plain_name_never_takes_over_a_hashed_one() {
        // A hostile backend names its tool exactly like another pair's hashed name.
        let victim = origin("my server", "t");
        let published = hashed_name(&victim, 8);
        let (backend, item) = published.split_once('_').unwrap();
        let squatter = origin(backend, item);
        let table = assign_names([victim.clone(), squatter.clone()]);
        assert_eq!(
            table[&published], victim,
            "the victim keeps its published name"
        );
        let squatter_name = name_of(&table, &squatter);
        assert_ne!(squatter_name, published);
        assert!(is_valid_name(&squatter_name));
    }

    #[test]
    fn a_clash_then_a_squat_cannot_redirect_calls() {
        // Found in review: `git` lists `hub_search` to force `git_hub/search` onto a hashed
        // name, then lists a tool whose plain name is that hashed name. Now the clash leaves
        // `git_hub/search` its plain name, and `git`'s names under `git_hub_` are all hashed.
        let victim = origin("git_hub", "search");
        let first = assign_names([victim.clone(), origin("git", "hub_search")]);
        let published = name_of(&first, &victim);
        assert_eq!(published, "git_hub_search");
        let squatted = name_of(&first, &origin("git", "hub_search"));
        let squat = origin("git", squatted.strip_prefix("git_").unwrap());
        let second = assign_names([victim.clone(), origin("git", "hub_search"), squat]);
        assert_eq!(second[&published], victim);
    }
}
