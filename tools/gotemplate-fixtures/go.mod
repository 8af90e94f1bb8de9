module kettle/tools/gotemplate-fixtures

go 1.19
