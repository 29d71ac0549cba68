//! A viewing plan: how many viewers each stream gets (`s00:444,s01:222,...`), expanded into
//! one stream name per viewer in a shuffled join order, so that viewers of big and small
//! streams join mixed over the ramp instead of stream after stream.

/// Reads `name:count,name:count,...` (counts may be 0; names must be non-empty and distinct).
pub fn parse(text: &str) -> Result<Vec<(String, usize)>, String> {
    let mut out: Vec<(String, usize)> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, count) = item
            .rsplit_once(':')
            .ok_or_else(|| format!("plan item `{item}`: expected NAME:COUNT"))?;
        let count = count
            .parse::<usize>()
            .map_err(|e| format!("plan item `{item}`: {e}"))?;
        if name.is_empty() || name.contains('/') {
            return Err(format!("plan item `{item}`: bad stream name"));
        }
        if out.iter().any(|(n, _)| n == name) {
            return Err(format!("plan: stream `{name}` listed twice"));
        }
        out.push((name.to_owned(), count));
    }
    if out.iter().all(|(_, c)| *c == 0) {
        return Err("plan: no viewers".into());
    }
    Ok(out)
}

/// One entry per viewer (its stream's index in `plan`), in a join order shuffled with `seed`
/// (the same seed gives the same order).
pub fn join_order(plan: &[(String, usize)], seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = plan
        .iter()
        .enumerate()
        .flat_map(|(i, (_, n))| std::iter::repeat_n(i, *n))
        .collect();
    let mut rng = SplitMix64(seed);
    // Fisher-Yates.
    for i in (1..order.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

/// A tiny deterministic generator (SplitMix64): the order only has to be mixed and repeatable.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_parse_and_expand() {
        let plan = parse("s00:3, s01:1,s02:0").unwrap();
        assert_eq!(
            plan,
            vec![("s00".into(), 3), ("s01".into(), 1), ("s02".into(), 0)]
        );
        let order = join_order(&plan, 7);
        assert_eq!(order.len(), 4);
        assert_eq!(order.iter().filter(|&&i| i == 0).count(), 3);
        assert_eq!(order, join_order(&plan, 7));
        assert!(parse("s00").is_err());
        assert!(parse("s00:1,s00:2").is_err());
        assert!(parse("s00:0").is_err());
        assert!(parse("s00:x").is_err());
    }

    #[test]
    fn the_order_is_mixed() {
        let plan = parse("a:500,b:500").unwrap();
        let order = join_order(&plan, 1);
        // The first half is not all one stream.
        let firsts = order[..500].iter().filter(|&&i| i == 0).count();
        assert!((150..350).contains(&firsts), "{firsts}");
    }
}
