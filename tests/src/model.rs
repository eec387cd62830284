//! AI nodes on the `openai` provider, against `testkit::FakeModel`.

use std::time::Duration;

use testkit::{FakeModel, Reply, Script};

/// The model name the nodes are configured with.
pub const MODEL: &str = "fake-model-1";

/// The variables that put AI nodes on `model` (`AI_PROVIDER=openai`).
pub fn env(model: &FakeModel) -> Vec<(&'static str, String)> {
    vec![
        ("AI_PROVIDER", "openai".to_owned()),
        ("OPENAI_BASE_URL", model.base_url()),
        ("OPENAI_MODEL", MODEL.to_owned()),
    ]
}

/// `words` tokens (" w0", " w1", ...; the first without its space), one every `delay`.
pub fn words(words: usize, delay: Duration) -> Script {
    Script::tokens((0..words).map(|i| {
        if i == 0 {
            "w0".to_owned()
        } else {
            format!(" w{i}")
        }
    }))
    .delay(delay)
}

/// A fake model whose every answer is `words` tokens, one every `delay` (as the simulator
/// paces its words), for the tests that do not care what the text is.
pub fn pacing_like_the_simulator(words_per_answer: usize, delay: Duration) -> FakeModel {
    let model = FakeModel::start();
    model.set_default(Reply::Stream(words(words_per_answer, delay)));
    model
}
