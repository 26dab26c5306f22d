pub fn run(_a: Args) -> anyhow::Result<()> { anyhow::bail!("demo assets not built yet") }
#[derive(clap::Args)] pub struct Args {}
