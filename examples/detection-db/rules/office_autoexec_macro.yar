/*
    Office documents whose VBA macros run automatically on opening and start a process.
*/

rule Office_AutoExec_Macro_Shell
{
    meta:
        author = "Overt example detection team"
        description = "Office document with an auto-executing macro that spawns a process"
        reference = "https://attack.mitre.org/techniques/T1204/002/"
        date = "2024-01-22"
        version = 1
        id = "51b360fe-593a-40e4-b18b-6532265e46bf"
        mitre_attack = "T1204.002, T1137"
        severity = "medium"

    strings:
        $auto1 = "AutoOpen" ascii nocase
        $auto2 = "Document_Open" ascii nocase
        $auto3 = "Workbook_Open" ascii nocase
        $auto4 = "Auto_Open" ascii nocase
        $exec1 = "WScript.Shell" ascii nocase
        $exec2 = "Shell(" ascii nocase
        $exec3 = "CreateObject" ascii nocase
        $vba = "vbaProject.bin" ascii

    condition:
        // OLE2 compound file (.doc, .xls) or OOXML zip (.docm, .xlsm) with a VBA project
        (uint32be(0) == 0xD0CF11E0 or (uint16(0) == 0x4B50 and $vba))
        and 1 of ($auto*) and 1 of ($exec*)
}
