//! Rule conditions: evalexpr expressions compiled once at load.
//!
//! Payload values are bound as variables, never spliced into expression
//! text. Expressions are capped in length and nesting before evalexpr sees
//! them, because evalexpr recurses over the tree and a deep one overflows
//! the stack, which aborts the process. `str::regex_matches` and
//! `str::regex_replace` use regexes compiled at load (evalexpr's builtins
//! compile the regex on every call).

use evalexpr::{Context, EvalexprError, EvalexprResult, Node, Operator, Value};
use regex::Regex;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// Longest expression accepted, in bytes.
pub const MAX_LEN: usize = 1024;
/// Deepest parenthesis nesting accepted in the text.
pub const MAX_PARENS: usize = 16;
/// Deepest operator tree accepted after parsing.
pub const MAX_DEPTH: usize = 48;

const REGEX_MATCHES: &str = "str::regex_matches";
const REGEX_REPLACE: &str = "str::regex_replace";

/// A compiled condition.
#[derive(Debug)]
pub struct Condition {
    pub text: String,
    tree: Node,
    /// Regexes given as string literals, compiled at load.
    regexes: HashMap<String, Regex>,
    /// The variables it reads: only these are bound when it is evaluated.
    vars: Vec<String>,
}

/// The variables a condition sees, by name.
pub struct Vars<'a> {
    pub names: &'a [&'a str],
    pub values: &'a [Value],
}

impl Condition {
    /// Whether it reads the variable `name`.
    pub fn uses(&self, name: &str) -> bool {
        self.vars.iter().any(|v| v == name)
    }

    /// Compiles `text`; `known` says whether a variable name exists.
    pub fn compile(text: &str, known: impl Fn(&str) -> bool) -> Result<Self, String> {
        if text.len() > MAX_LEN {
            return Err(format!(
                "expression is {} bytes long; the limit is {MAX_LEN}",
                text.len()
            ));
        }
        let mut depth = 0usize;
        for c in text.chars() {
            match c {
                '(' => {
                    depth += 1;
                    if depth > MAX_PARENS {
                        return Err(format!("expression nests parentheses deeper than {MAX_PARENS}"));
                    }
                }
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        let tree = evalexpr::build_operator_tree(text).map_err(|e| format!("invalid expression: {e}"))?;
        if tree_depth(&tree) > MAX_DEPTH {
            return Err(format!("expression nests deeper than {MAX_DEPTH} operators"));
        }
        check_operands(&tree)?;
        for name in tree.iter_variable_identifiers() {
            if !known(name) {
                return Err(format!("expression uses `{name}`, which is not a param of this mapping nor one of `source`, `event`, `action`"));
            }
        }
        for f in tree.iter_function_identifiers() {
            if !known_function(f) {
                return Err(format!("expression calls `{f}`, which is not a function (see evalexpr's builtins, and `str::regex_matches`, `str::regex_replace`)"));
            }
        }
        if tree.iter_write_variable_identifiers().next().is_some() {
            return Err("expression assigns a variable; conditions can only read".to_string());
        }
        let mut regexes = HashMap::new();
        collect_regex_literals(&tree, &mut regexes)?;
        let mut vars: Vec<String> = tree.iter_variable_identifiers().map(str::to_string).collect();
        vars.sort_unstable();
        vars.dedup();
        let condition = Condition {
            text: text.to_string(),
            tree,
            regexes,
            vars,
        };
        // One that reads no variable gives the same on every delivery: if
        // that is not true or false, it is refused now rather than logged
        // as an error on each.
        if condition.vars.is_empty() {
            condition
                .eval(&Vars {
                    names: &[],
                    values: &[],
                })
                .map_err(|e| format!("the expression reads no variable and can never be evaluated: {e}"))?;
        }
        Ok(condition)
    }

    /// Evaluates the condition; an error (a type mismatch, say) is returned, not raised.
    pub fn eval(&self, vars: &Vars<'_>) -> Result<bool, String> {
        let context = EvalContext {
            vars,
            regexes: &self.regexes,
        };
        match self.tree.eval_with_context(&context) {
            Ok(Value::Boolean(b)) => Ok(b),
            Ok(other) => Err(format!("expression gave {other} instead of true or false")),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Whether `name` is one of our functions or an evalexpr builtin.
fn known_function(name: &str) -> bool {
    if name == REGEX_MATCHES || name == REGEX_REPLACE {
        return true;
    }
    // A builtin called with no argument fails on the argument, not on the name.
    let probe = format!("{name}(())");
    !matches!(
        evalexpr::eval_with_context(&probe, &evalexpr::HashMapContext::new()),
        Err(EvalexprError::FunctionIdentifierNotFound(_))
    )
}

fn tree_depth(root: &Node) -> usize {
    let mut max = 0;
    let mut stack = vec![(root, 1usize)];
    while let Some((node, depth)) = stack.pop() {
        max = max.max(depth);
        stack.extend(node.children().iter().map(|c| (c, depth + 1)));
    }
    max
}

/// evalexpr accepts `a ==` and only fails when it runs; refuse it at load.
fn check_operands(root: &Node) -> Result<(), String> {
    use Operator::*;
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        let wanted = match node.operator() {
            Add | Sub | Mul | Div | Mod | Exp | Eq | Neq | Gt | Lt | Geq | Leq | And | Or => Some(2),
            Neg | Not => Some(1),
            Chain => return Err("`;` is not allowed in a condition".to_string()),
            _ => None,
        };
        if wanted.is_some_and(|n| node.children().len() != n) {
            return Err(format!(
                "invalid expression: `{}` is missing an operand",
                node.operator()
            ));
        }
        if matches!(node.operator(), RootNode) && node.children().is_empty() {
            return Err("the expression is empty".to_string());
        }
        stack.extend(node.children());
    }
    Ok(())
}

/// Finds `str::regex_*(x, "literal", ...)` calls and compiles their literals.
fn collect_regex_literals(root: &Node, out: &mut HashMap<String, Regex>) -> Result<(), String> {
    let mut stack = vec![root];
    while let Some(node) = stack.pop() {
        if let Operator::FunctionIdentifier { identifier } = node.operator() {
            if identifier == REGEX_MATCHES || identifier == REGEX_REPLACE {
                if let Some(pattern) = second_argument_literal(node) {
                    let re = Regex::new(&pattern).map_err(|e| format!("invalid regex in `{identifier}`: {e}"))?;
                    out.insert(pattern, re);
                }
            }
        }
        stack.extend(node.children());
    }
    Ok(())
}

fn second_argument_literal(call: &Node) -> Option<String> {
    // The call's child is the argument, possibly wrapped in a root node.
    let mut arg = call.children().first()?;
    while matches!(arg.operator(), Operator::RootNode) && arg.children().len() == 1 {
        arg = &arg.children()[0];
    }
    if !matches!(arg.operator(), Operator::Tuple) {
        return None;
    }
    let mut second = arg.children().get(1)?;
    while matches!(second.operator(), Operator::RootNode) && second.children().len() == 1 {
        second = &second.children()[0];
    }
    match second.operator() {
        Operator::Const {
            value: Value::String(s),
        } => Some(s.clone()),
        _ => None,
    }
}

struct EvalContext<'a> {
    vars: &'a Vars<'a>,
    regexes: &'a HashMap<String, Regex>,
}

impl EvalContext<'_> {
    fn regex(&self, pattern: &str) -> EvalexprResult<RegexRef<'_>> {
        match self.regexes.get(pattern) {
            Some(re) => Ok(RegexRef::Literal(re)),
            None => dynamic_regex(pattern).map(RegexRef::Dynamic),
        }
    }
}

enum RegexRef<'a> {
    Literal(&'a Regex),
    Dynamic(Arc<Regex>),
}

impl std::ops::Deref for RegexRef<'_> {
    type Target = Regex;
    fn deref(&self) -> &Regex {
        match self {
            RegexRef::Literal(re) => re,
            RegexRef::Dynamic(re) => re,
        }
    }
}

/// Regexes built from a param's value at run time, cached (bounded).
fn dynamic_regex(pattern: &str) -> EvalexprResult<Arc<Regex>> {
    const MAX_CACHED: usize = 256;
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(re) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(pattern) {
        return Ok(re.clone());
    }
    let re = Arc::new(Regex::new(pattern).map_err(|e| EvalexprError::InvalidRegex {
        regex: pattern.to_string(),
        message: e.to_string(),
    })?);
    let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
    if cache.len() >= MAX_CACHED {
        cache.clear();
    }
    cache.insert(pattern.to_string(), re.clone());
    Ok(re)
}

impl Context for EvalContext<'_> {
    fn get_value(&self, identifier: &str) -> Option<&Value> {
        let i = self.vars.names.iter().position(|n| *n == identifier)?;
        self.vars.values.get(i)
    }

    fn call_function(&self, identifier: &str, argument: &Value) -> EvalexprResult<Value> {
        match identifier {
            REGEX_MATCHES => {
                let args = argument.as_fixed_len_tuple(2)?;
                let subject = args[0].as_string()?;
                let pattern = args[1].as_string()?;
                Ok(Value::Boolean(self.regex(&pattern)?.is_match(&subject)))
            }
            REGEX_REPLACE => {
                let args = argument.as_fixed_len_tuple(3)?;
                let subject = args[0].as_string()?;
                let pattern = args[1].as_string()?;
                let replacement = args[2].as_string()?;
                let re = self.regex(&pattern)?;
                Ok(Value::String(
                    re.replace_all(&subject, replacement.as_str()).into_owned(),
                ))
            }
            _ => Err(EvalexprError::FunctionIdentifierNotFound(identifier.to_string())),
        }
    }

    fn are_builtin_functions_disabled(&self) -> bool {
        false
    }

    fn set_builtin_functions_disabled(&mut self, _disabled: bool) -> EvalexprResult<()> {
        Err(EvalexprError::CustomMessage(
            "builtin functions cannot be disabled here".into(),
        ))
    }
}

/// Converts a JSON value to the evalexpr value a condition sees.
pub fn to_value(json: Option<&serde_json::Value>) -> Value {
    use serde_json::Value as J;
    match json {
        None | Some(J::Null) => Value::String(String::new()),
        Some(J::Bool(b)) => Value::Boolean(*b),
        Some(J::Number(n)) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Some(J::String(s)) => Value::String(s.clone()),
        Some(other) => Value::String(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str, names: &[&str], values: Vec<Value>) -> Result<bool, String> {
        let c = Condition::compile(text, |n| names.contains(&n))?;
        c.eval(&Vars { names, values: &values })
    }

    #[test]
    fn matches_params_and_cached_regex() {
        let names = ["ref", "repo"];
        let vals = || vec![Value::from("refs/heads/main"), Value::from("acme/app")];
        assert_eq!(
            eval(
                r#"ref == "refs/heads/main" && str::regex_matches(repo, "^acme/")"#,
                &names,
                vals()
            ),
            Ok(true)
        );
        assert_eq!(
            eval(r#"str::regex_matches(repo, "^other/")"#, &names, vals()),
            Ok(false)
        );
        assert_eq!(
            eval(r#"str::regex_replace(repo, "^acme/", "") == "app""#, &names, vals()),
            Ok(true)
        );
        // A pattern taken from a param is compiled at run time.
        assert_eq!(eval(r#"str::regex_matches(repo, ref)"#, &names, vals()), Ok(false));
    }

    #[test]
    fn runtime_type_errors_are_values_not_panics() {
        let err = eval("n > 3", &["n"], vec![Value::from("abc")]).unwrap_err();
        assert!(!err.is_empty());
        assert!(eval("n + 1", &["n"], vec![Value::from(1)])
            .unwrap_err()
            .contains("instead of true or false"));
    }

    #[test]
    fn refuses_at_load() {
        let none = |_: &str| false;
        assert!(Condition::compile("ref ==", none).is_err());
        assert!(Condition::compile("ref ==", |_| true)
            .unwrap_err()
            .contains("missing an operand"));
        assert!(Condition::compile("ref == 1; 2", |_| true).is_err());
        assert!(Condition::compile("", |_| true).is_err());
        assert!(Condition::compile("!", |_| true).is_err());
        assert!(Condition::compile("unknown == 1", none)
            .unwrap_err()
            .contains("`unknown`"));
        assert!(
            Condition::compile(&format!("{}1{}", "(".repeat(100), ")".repeat(100)), none)
                .unwrap_err()
                .contains("parentheses")
        );
        assert!(Condition::compile(&"1 + ".repeat(400), none)
            .unwrap_err()
            .contains("limit"));
        assert!(Condition::compile("x = 1", |_| true).is_err());
        assert!(Condition::compile("str::regex_match(ref, \"x\")", |_| true)
            .unwrap_err()
            .contains("`str::regex_match`"));
        assert!(Condition::compile("str::to_lowercase(ref) == \"x\" && len(ref) > 1", |_| true).is_ok());
        assert!(Condition::compile(r#"str::regex_matches("a", "(")"#, none)
            .unwrap_err()
            .contains("invalid regex"));
        let deep = format!("{}true", "!".repeat(200));
        assert!(Condition::compile(&deep, none).is_err());
    }

    #[test]
    fn a_constant_condition_is_evaluated_at_load() {
        let none = |_: &str| false;
        for ok in ["true", "false", "1 == 1", r#"str::regex_matches("abc", "^a")"#] {
            assert!(Condition::compile(ok, none).is_ok(), "{ok}");
        }
        assert_eq!(
            Condition::compile("1", none).unwrap_err(),
            "the expression reads no variable and can never be evaluated: expression gave 1 instead of true or false"
        );
        let err = Condition::compile(r#"1 + "a" == 2"#, none).unwrap_err();
        assert!(
            err.starts_with("the expression reads no variable and can never be evaluated: "),
            "{err}"
        );
        // One that reads a variable is judged per delivery, as before.
        assert!(Condition::compile("n + 1", |_| true).is_ok());
    }
}
