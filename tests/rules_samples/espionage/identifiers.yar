/*
   People, hosts and organisations, and the reviewer's watch list.
*/

rule Ident_Email_In_Documents {
   meta:
      author = "sample"
      reference = "test"
      expect = "identifier:high document-target:medium"
   strings:
      $e = "jane.doe@ngo-example.org" nocase wide ascii
      $w = "word/document.xml"
   condition:
      uint32(0) == 0x04034B50 and $w and $e
}

rule Ident_User_Profile_Path {
   meta:
      author = "sample"
      reference = "test"
      expect = "identifier:high document-target:medium"
   condition:
      filepath icontains "C:\\Users\\jsmith\\Documents\\" and extension == ".pdf"
}

rule Ident_Email_Anywhere {
   meta:
      author = "sample"
      reference = "test"
      expect = "identifier:medium"
   strings:
      $e = "press-office@ministry-example.gov"
   condition:
      $e
}

rule Ident_Internal_Host_Mail {
   meta:
      author = "sample"
      reference = "test"
      expect = "identifier:high document-target:medium"
   strings:
      $h = "\\\\FILESRV-HR01\\payroll\\" nocase
      $r = "Received: from"
   condition:
      $h and $r
}

rule Ident_Watchlist_Code_Name {
   meta:
      author = "sample"
      reference = "test"
      expect = "watchlist:high"
   strings:
      $a = "PROJECT-NIGHTJAR" nocase wide ascii
   condition:
      $a
}

rule Ident_Watchlist_Hex {
   meta:
      author = "sample"
      reference = "test"
      expect = "watchlist:high"
   strings:
      // "Lantern Fish" in UTF-16LE
      $a = { 4C 00 61 00 6E 00 74 00 65 00 72 00 6E 00 20 00 46 00 69 00 73 00 68 00 }
   condition:
      $a
}
