//! Symbolic dimensions as typed expressions with checked arithmetic.
//!
//! A [`Dim`] is a known integer or a symbolic [`Expr`]: a sum of terms, each an integer
//! coefficient times a product of factors, a factor being a named symbol (`batch`) or
//! the floor quotient of two expressions (`(h+1)/2`). Every operation returns the
//! canonical form, so two dimensions are equal exactly when their forms are:
//! like terms are merged (`batch + 2*batch = 3*batch`), products are distributed over
//! sums, factors and terms are kept sorted, zero terms dropped, an expression without
//! symbols is a [`Dim::Known`], and a quotient by a positive integer keeps only the
//! remainder part inside the quotient (`(2*h+3)/2 = h+1+(1/2)` folds to `h+1`).
//!
//! Arithmetic is checked: a coefficient that leaves the 64-bit range, a division by
//! zero or an expression that grows past [`MAX_SIZE`] factors is a [`DimError`] that
//! names the operation, never a panic or a wrapped value. Dimensions come from model
//! files, so they may be anything.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

/// Most factors (counted over all terms, quotients included) one expression may hold.
pub const MAX_SIZE: usize = 256;

/// One dimension: a known size, or a symbolic expression such as `batch` or `16*batch`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    /// A static size.
    Known(i64),
    /// A symbolic size (a dynamic axis of an input, or one derived from it); never
    /// an expression without symbols, which is [`Dim::Known`].
    Sym(Expr),
}

/// A symbolic expression in canonical form, holding at least one symbol.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Expr(Poly);

/// Why arithmetic on dimensions has no result; the text names the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DimError {
    /// A coefficient or value does not fit in a 64-bit integer.
    Overflow(String),
    /// A division by zero.
    DivisionByZero(String),
    /// The expression would hold more than [`MAX_SIZE`] factors.
    TooLarge(String),
}

impl fmt::Display for DimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DimError::Overflow(op) => write!(f, "dimension {op} overflows a 64-bit integer"),
            DimError::DivisionByZero(op) => write!(f, "dimension {op} divides by zero"),
            DimError::TooLarge(op) => write!(f, "dimension {op} grows past {MAX_SIZE} symbolic factors"),
        }
    }
}

impl std::error::Error for DimError {}

/// Sum of `coefficient * product of factors`; the empty product is the constant term.
/// No zero coefficients, so the form is canonical.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
struct Poly(BTreeMap<Vec<Factor>, i64>);

/// A factor of a term (kept sorted within the term, repeated for powers).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Factor {
    /// A named symbol.
    Sym(String),
    /// `floor(numerator / denominator)` that does not simplify further.
    Div(Box<Poly>, Box<Poly>),
}

/// An overflow, recorded without its text (built only when reported).
struct Overflow;

type Checked<T> = std::result::Result<T, Overflow>;

impl Poly {
    fn constant(v: i64) -> Poly {
        let mut m = BTreeMap::new();
        if v != 0 {
            m.insert(Vec::new(), v);
        }
        Poly(m)
    }

    fn factor(f: Factor) -> Poly {
        Poly([(vec![f], 1)].into())
    }

    fn as_constant(&self) -> Option<i64> {
        match self.0.len() {
            0 => Some(0),
            1 => self.0.get(&Vec::new()).copied(),
            _ => None,
        }
    }

    /// Number of factors, counting those inside quotients.
    fn size(&self) -> usize {
        self.0.keys().map(|fs| fs.iter().map(Factor::size).sum::<usize>().max(1)).sum()
    }

    fn add_term(&mut self, factors: Vec<Factor>, coef: i64) -> Checked<()> {
        use std::collections::btree_map::Entry;
        match self.0.entry(factors) {
            Entry::Vacant(v) => {
                if coef != 0 {
                    v.insert(coef);
                }
            }
            Entry::Occupied(mut o) => {
                let sum = o.get().checked_add(coef).ok_or(Overflow)?;
                if sum == 0 {
                    o.remove();
                } else {
                    *o.get_mut() = sum;
                }
            }
        }
        Ok(())
    }

    fn add(&self, other: &Poly, sign: i64) -> Checked<Poly> {
        let mut out = self.clone();
        for (fs, &c) in &other.0 {
            out.add_term(fs.clone(), c.checked_mul(sign).ok_or(Overflow)?)?;
        }
        Ok(out)
    }

    fn mul(&self, other: &Poly) -> Checked<Poly> {
        let mut out = Poly::default();
        for (fa, &ca) in &self.0 {
            for (fb, &cb) in &other.0 {
                let mut fs: Vec<Factor> = fa.iter().chain(fb).cloned().collect();
                fs.sort();
                out.add_term(fs, ca.checked_mul(cb).ok_or(Overflow)?)?;
            }
        }
        Ok(out)
    }

    /// `self / other` when it divides exactly, else `None`.
    fn div_exact(&self, other: &Poly) -> Option<Poly> {
        if let Some(k) = other.as_constant() {
            let mut out = Poly::default();
            for (fs, &c) in &self.0 {
                if c.checked_rem(k)? != 0 {
                    return None;
                }
                out.0.insert(fs.clone(), c.checked_div(k)?);
            }
            return Some(out);
        }
        if self == other {
            return Some(Poly::constant(1));
        }
        let (first, &first_coef) = other.0.iter().next()?;
        // By a monomial (`32*batch`): every term divided by it (the `-1` of a Reshape of
        // `[batch, n*m + 1, 32]` to `[batch, -1, 2, 16]`).
        if other.0.len() == 1 {
            let mut out = Poly::default();
            for (fs, &c) in &self.0 {
                out = out.add(&monomial_div(fs, c, first, first_coef)?, 1).ok()?;
            }
            return Some(out);
        }
        // A monomial quotient: `other * q == self` for `q` = some term of `self`
        // divided by the first term of `other`.
        for (fs, &c) in &self.0 {
            let Some(q) = monomial_div(fs, c, first, first_coef) else { continue };
            if other.mul(&q).ok().as_ref() == Some(self) {
                return Some(q);
            }
        }
        None
    }

    /// `floor(self / other)`, simplified: by a positive integer `k`, every coefficient
    /// `c = k*q + r` (0 <= r < k) contributes `q` outside and `r` to the quotient that remains.
    fn floor_div(&self, other: &Poly) -> std::result::Result<Poly, DivFail> {
        match (self.as_constant(), other.as_constant()) {
            (_, Some(0)) => return Err(DivFail::Zero),
            (Some(a), Some(b)) => return a.checked_div_euclid(b).map(Poly::constant).ok_or(DivFail::Overflow),
            _ => {}
        }
        if let Some(q) = self.div_exact(other) {
            return Ok(q);
        }
        let Some(k) = other.as_constant() else {
            return Ok(Poly::factor(Factor::Div(Box::new(self.clone()), Box::new(other.clone()))));
        };
        // floor(P / -k) = floor(-P / k).
        let (num, k) = if k < 0 {
            (Poly::default().add(self, -1).map_err(|_| DivFail::Overflow)?, k.checked_neg().ok_or(DivFail::Overflow)?)
        } else {
            (self.clone(), k)
        };
        let (mut whole, mut rest) = (Poly::default(), Poly::default());
        for (fs, &c) in &num.0 {
            let (q, r) = (c.div_euclid(k), c.rem_euclid(k));
            if q != 0 {
                whole.0.insert(fs.clone(), q);
            }
            if r != 0 {
                rest.0.insert(fs.clone(), r);
            }
        }
        // A constant remainder lies in [0, k): its quotient is 0.
        if rest.as_constant().is_none() {
            let part = Poly::factor(Factor::Div(Box::new(rest), Box::new(Poly::constant(k))));
            whole = whole.add(&part, 1).map_err(|_| DivFail::Overflow)?;
        }
        Ok(whole)
    }

    fn eval(&self, b: &HashMap<String, i64>) -> Option<i64> {
        self.0.iter().try_fold(0i64, |acc, (fs, &c)| {
            let term = fs.iter().try_fold(c, |p, f| p.checked_mul(f.eval(b)?))?;
            acc.checked_add(term)
        })
    }

    fn symbols<'a>(&'a self, out: &mut BTreeSet<&'a str>) {
        for f in self.0.keys().flatten() {
            match f {
                Factor::Sym(s) => {
                    out.insert(s);
                }
                Factor::Div(n, d) => {
                    n.symbols(out);
                    d.symbols(out);
                }
            }
        }
    }

    fn is_sum(&self) -> bool {
        self.0.len() > 1 || self.0.values().any(|&c| c < 0)
    }
}

enum DivFail {
    Zero,
    Overflow,
}

/// `c * fs / (d * ds)` when `ds` is a sub-multiset of `fs` and `d` divides `c`.
fn monomial_div(fs: &[Factor], c: i64, ds: &[Factor], d: i64) -> Option<Poly> {
    if c.checked_rem(d)? != 0 {
        return None;
    }
    let mut rest = fs.to_vec();
    for f in ds {
        let pos = rest.iter().position(|x| x == f)?;
        rest.remove(pos);
    }
    let coef = c.checked_div(d)?;
    Some(Poly([(rest, coef)].into()))
}

impl Factor {
    fn size(&self) -> usize {
        match self {
            Factor::Sym(_) => 1,
            Factor::Div(n, d) => 1 + n.size() + d.size(),
        }
    }

    fn eval(&self, b: &HashMap<String, i64>) -> Option<i64> {
        match self {
            Factor::Sym(s) => b.get(s).copied(),
            Factor::Div(n, d) => n.eval(b)?.checked_div_euclid(d.eval(b)?),
        }
    }
}

/// The terms of a `dim_param` read as a sum, each trimmed and marked negative when a
/// `-` precedes it (`a + 2*b - 1` is `a`, `2*b`, -`1`); `None` when a term is empty
/// (`-1`, `a +`, `a + - b`). A `-` with a non-space before it and a letter or `_` after
/// it is part of a name (`batch-size`).
fn signed_terms(text: &str) -> Option<Vec<(bool, &str)>> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let (mut start, mut neg) = (0, false);
    for (k, &(i, c)) in chars.iter().enumerate() {
        let operator = match c {
            '+' => true,
            '-' => {
                let joined_before = k > 0 && !chars[k - 1].1.is_whitespace();
                let name_after = chars.get(k + 1).is_some_and(|&(_, n)| n.is_alphabetic() || n == '_');
                !(joined_before && name_after)
            }
            _ => false,
        };
        if operator {
            let term = text[start..i].trim();
            if term.is_empty() {
                return None;
            }
            out.push((neg, term));
            (start, neg) = (i + c.len_utf8(), c == '-');
        }
    }
    let last = text[start..].trim();
    if last.is_empty() {
        return None;
    }
    out.push((neg, last));
    Some(out)
}

/// A symbol name printed as is: letters, digits and `_ . :`; others get parentheses.
fn plain_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | ':'))
}

impl fmt::Display for Factor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Factor::Sym(s) if plain_name(s) => write!(f, "{s}"),
            Factor::Sym(s) => write!(f, "({s})"),
            Factor::Div(n, d) => {
                let wrap = |p: &Poly| if p.is_sum() { format!("({p})") } else { p.to_string() };
                write!(f, "({}/{})", wrap(n), wrap(d))
            }
        }
    }
}

impl fmt::Display for Poly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Symbolic terms first, the constant last: `seq-1`, `2*batch+3`.
        let mut terms: Vec<(&Vec<Factor>, i64)> = self.0.iter().filter(|(fs, _)| !fs.is_empty()).map(|(fs, &c)| (fs, c)).collect();
        let constant = self.0.get(&Vec::new()).copied();
        if terms.is_empty() {
            return write!(f, "{}", constant.unwrap_or(0));
        }
        if let Some(c) = constant {
            static EMPTY: Vec<Factor> = Vec::new();
            terms.push((&EMPTY, c));
        }
        for (i, (fs, c)) in terms.into_iter().enumerate() {
            let neg = c < 0;
            if i > 0 {
                write!(f, "{}", if neg { "-" } else { "+" })?;
            } else if neg {
                write!(f, "-")?;
            }
            let mag = c.unsigned_abs();
            let body: Vec<String> = fs.iter().map(Factor::to_string).collect();
            match (mag, body.is_empty()) {
                (_, true) => write!(f, "{mag}")?,
                (1, false) => write!(f, "{}", body.join("*"))?,
                _ => write!(f, "{mag}*{}", body.join("*"))?,
            }
        }
        Ok(())
    }
}

impl Expr {
    /// The name, when the expression is one bare symbol.
    pub fn as_symbol(&self) -> Option<&str> {
        match self.0 .0.iter().next() {
            Some((fs, 1)) if self.0 .0.len() == 1 => match fs.as_slice() {
                [Factor::Sym(s)] => Some(s),
                _ => None,
            },
            _ => None,
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_symbol() {
            Some(s) => write!(f, "{s}"),
            None => write!(f, "{}", self.0),
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Known(v) => write!(f, "{v}"),
            Dim::Sym(e) => write!(f, "{e}"),
        }
    }
}

/// `a op b` for an error message, with sums in parentheses.
fn op_text(a: &Dim, op: &str, b: &Dim) -> String {
    let wrap = |d: &Dim| match d {
        Dim::Sym(e) if e.0.is_sum() && e.as_symbol().is_none() => format!("({d})"),
        Dim::Known(v) if *v < 0 => format!("({v})"),
        _ => d.to_string(),
    };
    format!("{}{op}{}", wrap(a), wrap(b))
}

impl Dim {
    /// The size, if static.
    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(v) => Some(*v),
            Dim::Sym(_) => None,
        }
    }

    /// The symbol `name`, whatever characters it holds.
    pub fn sym(name: impl Into<String>) -> Dim {
        Dim::Sym(Expr(Poly::factor(Factor::Sym(name.into()))))
    }

    /// A file's `dim_param`: a sum or difference of products of unsigned integers and
    /// names, with or without spaces around `+` and `-` (`64*batch`, `sequence*batch`,
    /// `12`, `past_sequence_length + sequence_length`, `seq+1`, `2*s0 - 1`), is that
    /// polynomial; any other text (`-1`, `(h+1)/2`, `a + `, `2 * s0`) is one symbol of
    /// that name. A `-` between a name character and a letter or `_` with no space
    /// around it belongs to a name (`batch-size`, which is therefore one symbol, not a
    /// difference). Refused when the integers overflow or the polynomial grows past
    /// [`MAX_SIZE`] factors.
    pub fn parse(param: &str) -> Result<Dim, DimError> {
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        let Some(terms) = signed_terms(param) else { return Ok(Dim::sym(param)) };
        let terms: Vec<(bool, Vec<&str>)> = terms.into_iter().map(|(neg, t)| (neg, t.split('*').collect())).collect();
        if !terms.iter().flat_map(|(_, fs)| fs).all(|p| digits(p) || plain_name(p)) {
            return Ok(Dim::sym(param));
        }
        // Errors name the whole parameter, not the partial sum they arose in.
        let refused = |e: DimError| match e {
            DimError::TooLarge(_) => DimError::TooLarge(param.to_string()),
            _ => DimError::Overflow(param.to_string()),
        };
        let mut out = Dim::Known(0);
        for (neg, factors) in terms {
            let mut term = Dim::Known(1);
            for p in factors {
                let f =
                    if digits(p) { Dim::Known(p.parse::<i64>().map_err(|_| DimError::Overflow(param.to_string()))?) } else { Dim::sym(p) };
                term = term.mul(&f).map_err(refused)?;
            }
            out = if neg { out.sub(&term) } else { out.add(&term) }.map_err(refused)?;
        }
        Ok(out)
    }

    fn poly(&self) -> Poly {
        match self {
            Dim::Known(v) => Poly::constant(*v),
            Dim::Sym(e) => e.0.clone(),
        }
    }

    fn from_poly(p: Poly, op: impl FnOnce() -> String) -> Result<Dim, DimError> {
        if let Some(v) = p.as_constant() {
            return Ok(Dim::Known(v));
        }
        if p.size() > MAX_SIZE {
            return Err(DimError::TooLarge(op()));
        }
        Ok(Dim::Sym(Expr(p)))
    }

    /// `self + other`.
    pub fn add(&self, other: &Dim) -> Result<Dim, DimError> {
        let text = || op_text(self, "+", other);
        let p = self.poly().add(&other.poly(), 1).map_err(|_| DimError::Overflow(text()))?;
        Dim::from_poly(p, text)
    }

    /// `self - other`.
    pub fn sub(&self, other: &Dim) -> Result<Dim, DimError> {
        let text = || op_text(self, "-", other);
        let p = self.poly().add(&other.poly(), -1).map_err(|_| DimError::Overflow(text()))?;
        Dim::from_poly(p, text)
    }

    /// `self * other` (`2*batch` times `8` is `16*batch`).
    pub fn mul(&self, other: &Dim) -> Result<Dim, DimError> {
        let text = || op_text(self, "*", other);
        let p = self.poly().mul(&other.poly()).map_err(|_| DimError::Overflow(text()))?;
        Dim::from_poly(p, text)
    }

    /// The product of several dimensions (1 for none).
    pub fn product<'a>(dims: impl IntoIterator<Item = &'a Dim>) -> Result<Dim, DimError> {
        dims.into_iter().try_fold(Dim::Known(1), |acc, d| acc.mul(d))
    }

    /// `self / other` when it divides exactly (`16*batch / 16 = batch`), else `None`.
    pub fn div_exact(&self, other: &Dim) -> Option<Dim> {
        let q = self.poly().div_exact(&other.poly())?;
        Dim::from_poly(q, String::new).ok()
    }

    /// `(n, k)` when the dimension is `floor(n / k)` for a positive constant `k` (a map
    /// padded to a multiple of a window, split into windows: `(h + pad) / 7`).
    pub fn as_quotient(&self) -> Option<(Dim, i64)> {
        let Dim::Sym(Expr(p)) = self else { return None };
        let (fs, &coef) = p.0.iter().next().filter(|_| p.0.len() == 1)?;
        let [Factor::Div(n, d)] = fs.as_slice() else { return None };
        let k = d.as_constant().filter(|&k| k > 0 && coef == 1)?;
        let n = Dim::from_poly((**n).clone(), String::new).ok()?;
        Some((n, k))
    }

    /// Floor division (`floor(self / other)`), simplified where possible.
    pub fn floor_div(&self, other: &Dim) -> Result<Dim, DimError> {
        let text = || op_text(self, "/", other);
        match self.poly().floor_div(&other.poly()) {
            Ok(p) => Dim::from_poly(p, text),
            Err(DivFail::Zero) => Err(DimError::DivisionByZero(text())),
            Err(DivFail::Overflow) => Err(DimError::Overflow(text())),
        }
    }

    /// The value once symbols are bound (e.g. `batch = 2`); `None` if a symbol is
    /// unbound, a quotient divides by zero or the value overflows.
    pub fn eval(&self, bindings: &HashMap<String, i64>) -> Option<i64> {
        match self {
            Dim::Known(v) => Some(*v),
            Dim::Sym(e) => e.0.eval(bindings),
        }
    }

    /// The names of the symbols the dimension holds, sorted.
    pub fn symbols(&self) -> Vec<&str> {
        let mut out = BTreeSet::new();
        if let Dim::Sym(e) = self {
            e.0.symbols(&mut out);
        }
        out.into_iter().collect()
    }

    /// The name, when the dimension is one bare symbol.
    pub fn as_symbol(&self) -> Option<&str> {
        match self {
            Dim::Sym(e) => e.as_symbol(),
            Dim::Known(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(name: &str) -> Dim {
        Dim::sym(name)
    }
    fn k(v: i64) -> Dim {
        Dim::Known(v)
    }

    #[test]
    fn canonical_forms() {
        let (b, q) = (s("batch"), s("seq"));
        assert_eq!(b.mul(&q).unwrap(), q.mul(&b).unwrap());
        assert_eq!(b.mul(&k(16)).unwrap().to_string(), "16*batch");
        assert_eq!(q.sub(&k(1)).unwrap().to_string(), "seq-1");
        assert_eq!(k(1).sub(&q).unwrap().to_string(), "-seq+1");
        // Sums distribute and like terms merge.
        let sum = q.add(&k(1)).unwrap().mul(&b).unwrap();
        assert_eq!(sum, b.mul(&q).unwrap().add(&b).unwrap());
        assert_eq!(sum.to_string(), "batch+batch*seq");
        assert_eq!(sum.sub(&b).unwrap().sub(&b.mul(&q).unwrap()).unwrap(), k(0));
        // A quotient by an integer keeps only the remainder inside.
        let h = s("h");
        assert_eq!(h.mul(&k(2)).unwrap().add(&k(3)).unwrap().floor_div(&k(2)).unwrap(), h.add(&k(1)).unwrap());
        let half = h.sub(&k(3)).unwrap().floor_div(&k(2)).unwrap();
        assert_eq!(half, h.add(&k(1)).unwrap().floor_div(&k(2)).unwrap().sub(&k(2)).unwrap());
        assert_eq!(half.to_string(), "((h+1)/2)-2");
        let bind: HashMap<String, i64> = [("h".to_string(), 8)].into();
        assert_eq!(half.eval(&bind), Some(2));
        assert_eq!(h.floor_div(&k(-2)).unwrap().eval(&bind), Some(-4));
        // Exact division by a sum.
        let p = sum.mul(&k(4)).unwrap();
        assert_eq!(p.div_exact(&q.add(&k(1)).unwrap()), Some(b.mul(&k(4)).unwrap()));
        assert_eq!(p.div_exact(&q), None);
        assert_eq!(p.floor_div(&q).unwrap().symbols(), vec!["batch", "seq"]);
        // Exact division of a sum by a monomial, term by term (DINOv2's tokens: the
        // patches of an interpolated grid and a class token).
        let tokens = h.floor_div(&k(8)).unwrap().mul(&s("w").floor_div(&k(8)).unwrap()).unwrap().add(&k(1)).unwrap();
        let numel = b.mul(&tokens).unwrap().mul(&k(32)).unwrap();
        assert_eq!(numel.div_exact(&b.mul(&k(32)).unwrap()), Some(tokens.clone()));
        assert_eq!(numel.div_exact(&b.mul(&k(64)).unwrap()), None);
    }

    #[test]
    fn parsed_parameters() {
        assert_eq!(Dim::parse("64*batch*8").unwrap(), s("batch").mul(&k(512)).unwrap());
        assert_eq!(Dim::parse("sequence*batch").unwrap().to_string(), "batch*sequence");
        assert_eq!(Dim::parse("batch-size").unwrap().as_symbol(), Some("batch-size"));
        assert_eq!(Dim::parse("batch-size").unwrap().mul(&k(2)).unwrap().to_string(), "2*(batch-size)");
        assert_eq!(Dim::parse("a**b").unwrap().as_symbol(), Some("a**b"));
        assert_eq!(Dim::parse("12").unwrap(), k(12));
        assert_eq!(Dim::parse("-1").unwrap().as_symbol(), Some("-1"));
        assert!(matches!(Dim::parse("18446744073709551616"), Err(DimError::Overflow(_))));
        let e = Dim::parse("99999999999*99999999999").unwrap_err();
        assert_eq!(e.to_string(), "dimension 99999999999*99999999999 overflows a 64-bit integer");
    }

    #[test]
    fn parsed_sums() {
        let (p, q) = (s("past_sequence_length"), s("sequence_length"));
        let both = p.add(&q).unwrap();
        assert_eq!(Dim::parse("past_sequence_length + sequence_length").unwrap(), both);
        assert_eq!(Dim::parse("past_sequence_length+sequence_length").unwrap(), both);
        assert_eq!(Dim::parse("  sequence_length  +past_sequence_length ").unwrap(), both);
        assert_eq!(Dim::parse("seq+1").unwrap(), s("seq").add(&k(1)).unwrap());
        assert_eq!(Dim::parse("sequence_length + 1").unwrap(), q.add(&k(1)).unwrap());
        let s0 = s("s0");
        let odd = s0.mul(&k(2)).unwrap().sub(&k(1)).unwrap();
        assert_eq!(Dim::parse("2*s0 - 1").unwrap(), odd);
        assert_eq!(Dim::parse("2*s0-1").unwrap(), odd);
        assert_eq!(Dim::parse("s0*2 - 3 + 2").unwrap(), odd);
        assert_eq!(Dim::parse("a - b").unwrap(), s("a").sub(&s("b")).unwrap());
        assert_eq!(Dim::parse("4*a*b + a - 2").unwrap().to_string(), "a+4*a*b-2");
        assert_eq!(Dim::parse("a - a").unwrap(), k(0));
        assert_eq!(Dim::parse("2 + 3").unwrap(), k(5));
        let bind: HashMap<String, i64> = [("past_sequence_length".to_string(), 3), ("sequence_length".to_string(), 5)].into();
        assert_eq!(Dim::parse("past_sequence_length + sequence_length").unwrap().eval(&bind), Some(8));
        assert_eq!(
            Dim::parse("past_sequence_length + sequence_length").unwrap().symbols(),
            vec!["past_sequence_length", "sequence_length"]
        );
        // Anything else stays one opaque symbol.
        for text in ["-1", "-seq + 1", "- a", "(h+1)/2", "h/2", "(a + b)", "a +", "a + + b", "a + - b", "+a", "a +  ", "2 * s0", "a ** b"] {
            assert_eq!(Dim::parse(text).unwrap().as_symbol(), Some(text), "{text}");
        }
        // A `-` joining names with no space is part of a name.
        assert_eq!(Dim::parse("batch-size + 1").unwrap().as_symbol(), Some("batch-size + 1"));
        assert_eq!(Dim::parse("batch - size").unwrap(), s("batch").sub(&s("size")).unwrap());
        // Errors name the whole parameter.
        let e = Dim::parse("18446744073709551616 + a").unwrap_err();
        assert_eq!(e.to_string(), "dimension 18446744073709551616 + a overflows a 64-bit integer");
        let e = Dim::parse("9223372036854775807*a + a").unwrap_err();
        assert_eq!(e.to_string(), "dimension 9223372036854775807*a + a overflows a 64-bit integer");
        let e = Dim::parse("1 - 9223372036854775807 - 9").unwrap_err();
        assert!(matches!(e, DimError::Overflow(m) if m == "1 - 9223372036854775807 - 9"));
        let long = (0..200).map(|i| format!("a{i}*b")).collect::<Vec<_>>().join(" + ");
        assert!(matches!(Dim::parse(&long), Err(DimError::TooLarge(_))), "{:?}", Dim::parse(&long));
    }

    #[test]
    fn overflow_is_an_error() {
        let a = s("a");
        let big = a.mul(&k(i64::MAX)).unwrap();
        assert!(matches!(big.add(&a), Err(DimError::Overflow(m)) if m == "9223372036854775807*a+a"));
        assert!(matches!(big.mul(&k(2)), Err(DimError::Overflow(_))));
        assert!(matches!(k(i64::MIN).sub(&k(1)), Err(DimError::Overflow(_))));
        assert!(matches!(k(i64::MIN).floor_div(&k(-1)), Err(DimError::Overflow(_))));
        assert!(matches!(a.floor_div(&k(0)), Err(DimError::DivisionByZero(m)) if m == "a/0"));
        assert_eq!(k(i64::MIN).div_exact(&k(-1)), None);
        // Products of sums stop growing at MAX_SIZE factors instead of exhausting memory.
        let mut x = s("x").add(&s("y")).unwrap();
        let mut err = None;
        for _ in 0..20 {
            match x.mul(&x) {
                Ok(y) => x = y,
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        assert!(matches!(err, Some(DimError::TooLarge(_)) | Some(DimError::Overflow(_))), "{err:?}");
    }
}
