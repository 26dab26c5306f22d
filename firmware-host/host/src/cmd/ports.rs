use clap::Parser;

/// List the serial ports this machine has.
#[derive(Parser)]
#[command(after_help = "Example:\n  medseg-host list-ports")]
pub struct Args {}

pub fn run(_: Args) -> anyhow::Result<()> {
    let ports = serialport::available_ports()
        .map_err(|e| anyhow::anyhow!("cannot list serial ports: {e}"))?;
    if ports.is_empty() {
        println!("no serial ports found (USB adapters appear as /dev/ttyUSB* or /dev/ttyACM*)");
    }
    for p in ports {
        let kind = match p.port_type {
            serialport::SerialPortType::UsbPort(u) => format!(
                "USB {:04x}:{:04x} {}",
                u.vid,
                u.pid,
                u.product.unwrap_or_default()
            ),
            serialport::SerialPortType::PciPort => "PCI".into(),
            serialport::SerialPortType::BluetoothPort => "Bluetooth".into(),
            serialport::SerialPortType::Unknown => "unknown".into(),
        };
        println!("{}\t{kind}", p.port_name);
    }
    Ok(())
}
