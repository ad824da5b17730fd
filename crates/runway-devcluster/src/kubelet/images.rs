//! The image catalogue: images are never pulled, and glob patterns say which
//! exist.

/// Glob match with `*` only.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Whether the catalogue has `image`: the last pattern that matches decides.
pub fn image_exists(catalogue: &[String], image: &str) -> bool {
    catalogue
        .iter()
        .rev()
        .find_map(|p| match p.strip_prefix('!') {
            Some(neg) => glob_match(neg, image).then_some(false),
            None => glob_match(p, image).then_some(true),
        })
        .unwrap_or(false)
}
