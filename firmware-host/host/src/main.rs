//! medseg-host: serial bridge to capture rigs and device screens (issue 4 fills it).

fn main() -> anyhow::Result<()> {
    anyhow::bail!("medseg-host is not implemented yet: the serial bridge is tracked in issue 4")
}
