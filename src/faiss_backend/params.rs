//! `search_params`: the search-time parameters of a faiss index in faiss's `ParameterSpace`
//! syntax, e.g. `"nprobe=16,efSearch=64"`. The names and values are checked here, before faiss
//! sees them (faiss converts each value to an integer without a range check, so `nprobe=-1`
//! would ask for 2^64 lists); faiss then refuses a name the index does not have.

use crate::error::{Error, Result};
use faiss::index::IndexImpl;
use std::ffi::CString;

/// The parameters this crate passes on, with the largest value each may take and what it does.
const KNOWN: [(&str, f64, &str); 5] = [
    ("nprobe", 1_048_576.0, "inverted lists visited per query (IVF)"),
    ("efSearch", 1_048_576.0, "candidate list size of the graph search (HNSW)"),
    ("quantizer_efSearch", 1_048_576.0, "efSearch of an HNSW coarse quantizer (IVF…_HNSW)"),
    ("k_factor_rf", 1024.0, "candidates re-ranked per neighbour (…,RFlat)"),
    ("ht", 65_536.0, "Hamming threshold of polysemous PQ codes"),
];

/// Parsed, checked search parameters, in the order given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchParams(Vec<(String, f64)>);

impl SearchParams {
    /// Parses `"name=value,name=value"`; an empty string is no parameters.
    pub fn parse(s: &str) -> Result<SearchParams> {
        let bad = |reason: String| Error::invalid("search_params", format!("{s:?}: {reason}"));
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').ok_or_else(|| bad(format!("{part:?} is not name=value")))?;
            let (name, value) = (name.trim(), value.trim());
            let Some(&(_, max, _)) = KNOWN.iter().find(|(n, _, _)| *n == name) else {
                let names: Vec<String> = KNOWN.iter().map(|(n, _, what)| format!("{n} ({what})")).collect();
                return Err(bad(format!("unknown parameter {name:?}; known: {}", names.join(", "))));
            };
            let v: f64 = value.parse().map_err(|_| bad(format!("{name}: {value:?} is not a number")))?;
            if !(v.is_finite() && v.fract() == 0.0 && (1.0..=max).contains(&v)) {
                return Err(bad(format!("{name} must be a whole number from 1 to {max}, not {value}")));
            }
            if out.iter().any(|(n, _): &(String, f64)| n == name) {
                return Err(bad(format!("{name} is given twice")));
            }
            out.push((name.to_owned(), v));
        }
        Ok(SearchParams(out))
    }

    /// True when parameter `name` is set.
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// True when no parameter is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets every parameter on `index` through faiss's `ParameterSpace`; an error naming the
    /// index and the parameter (and what it sets) when the index has no such parameter.
    pub fn apply(&self, index: &mut IndexImpl, factory: &str) -> Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let mut space = std::ptr::null_mut();
        // SAFETY: `space` is a valid out-pointer; faiss allocates the object.
        if unsafe { faiss_sys::faiss_ParameterSpace_new(&mut space) } != 0 || space.is_null() {
            return Err(Error::Faiss { context: "creating a ParameterSpace".into(), message: super::native::last_error() });
        }
        let result = self.0.iter().try_for_each(|(name, v)| {
            let c_name = CString::new(name.as_str()).map_err(|_| Error::invalid("search_params", "a name holds a NUL byte"))?;
            // SAFETY: `space` and the index are live faiss objects and `c_name` a C string.
            let code = unsafe { faiss_sys::faiss_ParameterSpace_set_index_parameter(space, index.inner_ptr(), c_name.as_ptr(), *v) };
            if code != 0 {
                // faiss's message starts with a C++ signature and a source path, of no use to a
                // user: an unknown name is said in our words, anything else by faiss's last
                // clause.
                let raw = super::native::last_error();
                if raw.contains("could not set parameter") {
                    let what = KNOWN.iter().find(|(n, _, _)| n == name).map_or("", |(_, _, what)| what);
                    return Err(Error::invalid("search_params", format!("index {factory:?} has no parameter {name} ({name} sets the {what})")));
                }
                let reason = raw.rsplit_once(": ").map_or(raw.as_str(), |(_, r)| r).trim();
                return Err(Error::invalid("search_params", format!("index {factory:?}: faiss cannot set {name}: {reason}")));
            }
            Ok(())
        });
        // SAFETY: created above, freed once.
        unsafe { faiss_sys::faiss_ParameterSpace_free(space) };
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let p = SearchParams::parse("nprobe=16, efSearch=64").unwrap();
        assert_eq!(p.0, vec![("nprobe".to_owned(), 16.0), ("efSearch".to_owned(), 64.0)]);
        assert!(SearchParams::parse("").unwrap().is_empty());
        assert!(p.has("efSearch") && !p.has("ht"));
        for (s, word) in [
            ("nprobe", "name=value"),
            ("nprob=3", "unknown parameter"),
            ("nprobe=-1", "from 1 to"),
            ("nprobe=0", "from 1 to"),
            ("nprobe=1.5", "whole number"),
            ("nprobe=1e30", "from 1 to"),
            ("nprobe=x", "not a number"),
            ("nprobe=inf", "whole number"),
            ("nprobe=2,nprobe=3", "twice"),
        ] {
            let e = SearchParams::parse(s).unwrap_err().to_string();
            assert!(e.contains(word), "{s}: {e}");
        }
    }
}
