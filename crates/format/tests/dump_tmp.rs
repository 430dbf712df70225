#[test]
fn dump() {
    let mut options = std::collections::BTreeMap::new();
    options.insert("opt".to_string(), "2".to_string());
    let mut g = kiln_ir::Graph::new();
    let x = g.add(kiln_ir::Op::Input { name: "x".into(), dtype: kiln_ir::DType::F32, shape: kiln_ir::Shape::new([kiln_ir::Dim::sym("N")]) }, &[]).unwrap();
    let w = g.add(kiln_ir::Op::Parameter { name: "w".into(), dtype: kiln_ir::DType::F32, shape: kiln_ir::Shape::known(&[1]) }, &[]).unwrap();
    let y = g.add(kiln_ir::Op::Binary(kiln_ir::BinaryOp::Mul), &[x, w]).unwrap();
    let m = kiln_format::Module {
        metadata: kiln_format::Metadata { producer: "kiln 0.1.0".into(), created: 1700000000, options },
        signature: kiln_format::Signature {
            inputs: vec![kiln_format::TensorSpec{ name: "x".into(), dtype: kiln_ir::DType::F32, shape: kiln_ir::Shape::new([kiln_ir::Dim::sym("N")])}],
            outputs: vec![kiln_format::TensorSpec{ name: "y".into(), dtype: kiln_ir::DType::F32, shape: kiln_ir::Shape::new([kiln_ir::Dim::sym("N")])}],
            symbols: vec![kiln_format::SymbolSpec{ name: "N".into(), min: 1, max: None }],
        },
        graph: g, outputs: vec![("y".into(), y)], updates: vec![], program: None,
        state: vec![("w".into(), kiln_ir::Array::from_f32(&[1], vec![2.0]).unwrap())],
    };
    let b = kiln_format::to_bytes(&m).unwrap();
    for (i, c) in b.chunks(16).enumerate() {
        let hex: Vec<String> = c.iter().map(|x| format!("{x:02x}")).collect();
        println!("{:04x}  {}", i * 16, hex.join(" "));
    }
    println!("len {}", b.len());
}
