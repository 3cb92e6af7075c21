-- The items the demo county ships (事项清单). An administrator can replace any of them, or
-- add others, with PUT /approval/items/:code; a county edits this file to change what it
-- ships. Department codes are the county's own (zhengtong admin dept add CODE NAME).
local PDF_IMG = { "application/pdf", "image/jpeg", "image/png", "application/ofd" }
local MB = 1024 * 1024

return {
  {
    code = "FOOD-LICENCE",
    name = "食品经营许可 (food business licence)",
    department = "scjg", -- 市场监督管理局: accepts and issues the licence
    legal_basis = "《中华人民共和国食品安全法》第三十五条；《食品经营许可和备案管理办法》",
    conditions = "有与经营的食品品种、数量相适应的经营场所；有食品安全管理人员和管理制度；"
      .. "设备布局和工艺流程合理。",
    statutory_days = 20,
    promised_days = 10,
    fee = 0,
    applicants = { "enterprise" },
    -- 并联审批: the food safety section and the health commission each decide
    parallel_departments = { "scjg-sp", "wjw" },
    workflow = "approval_parallel",
    without_credit = "refuse",
    materials = {
      { name = "application", title = "食品经营许可申请书", formats = PDF_IMG, max_bytes = 5 * MB },
      { name = "licence_copy", title = "营业执照复印件", formats = PDF_IMG, max_bytes = 5 * MB },
      { name = "floor_plan", title = "经营场所平面布局图", formats = PDF_IMG, max_bytes = 10 * MB },
      { name = "safety_rules", title = "食品安全管理制度文本", formats = { "application/pdf", "application/ofd" },
        max_bytes = 5 * MB },
      { name = "health_certs", title = "从业人员健康证明", formats = PDF_IMG, max_bytes = 10 * MB,
        required = false },
    },
    form = {
      { name = "business_name", title = "经营者名称", required = true },
      { name = "address", title = "经营场所", required = true },
      { name = "categories", title = "经营项目", required = true },
      { name = "area_m2", title = "经营面积（平方米）", type = "number", required = true,
        min = 1, max = 100000 },
    },
  },
  {
    code = "BIRTH-REG",
    name = "生育登记 (birth registration)",
    department = "wjw", -- 卫生健康委员会
    legal_basis = "《中华人民共和国人口与计划生育法》；《安徽省人口与计划生育条例》",
    conditions = "夫妻双方或一方户籍在本县。",
    statutory_days = 5,
    promised_days = 1,
    fee = 0,
    applicants = { "citizen" },
    workflow = "approval_simple",
    without_credit = "skip",
    materials = {
      { name = "id_cards", title = "夫妻双方居民身份证", formats = PDF_IMG, max_bytes = 5 * MB },
      { name = "marriage_cert", title = "结婚证", formats = PDF_IMG, max_bytes = 5 * MB, required = false },
    },
    form = {
      { name = "spouse_name", title = "配偶姓名", required = true },
      { name = "children", title = "现有子女数", type = "integer", required = true, min = 0, max = 20 },
    },
  },
  {
    code = "ROAD-DIG",
    name = "城市道路挖掘许可 (road excavation permit)",
    department = "zjj", -- 住房和城乡建设局: accepts and issues the permit
    legal_basis = "《城市道路管理条例》第三十条、第三十三条",
    conditions = "因工程建设确需挖掘城市道路，并已取得相关审批手续。",
    statutory_days = 20,
    promised_days = 7,
    fee = 0,
    applicants = { "enterprise" },
    -- 会签: two of the three departments must sign
    countersign = { departments = { "zjj", "gajj", "zhzf" }, need = 2 },
    workflow = "approval_countersign",
    without_credit = "refuse",
    materials = {
      { name = "application", title = "城市道路挖掘申请表", formats = PDF_IMG, max_bytes = 5 * MB },
      { name = "drawings", title = "施工图及占挖范围示意图", formats = { "application/pdf" }, max_bytes = 20 * MB },
      { name = "traffic_plan", title = "交通组织方案", formats = { "application/pdf" }, max_bytes = 10 * MB },
    },
    form = {
      { name = "road", title = "道路名称及路段", required = true },
      { name = "length_m", title = "挖掘长度（米）", type = "number", required = true,
        min = 0.1, max = 10000 },
      { name = "start_date", title = "计划开工日期", required = true },
      { name = "days", title = "占用天数", type = "integer", required = true, min = 1, max = 365 },
    },
  },
}
